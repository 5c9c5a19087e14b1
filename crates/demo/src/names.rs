//! The fixed pool of simulated people: Latin, Ukrainian and Russian names, some with
//! gender, language and an avatar, and their user ids on each provider.
//!
//! The pool is the same on every run (its own fixed seed), so users come back across
//! restarts of the demo just as they do within one run.

/// How many people the simulator can pick from.
pub(crate) const POOL_SIZE: usize = 300;

/// Seed of the pool itself (independent of the traffic seed).
const POOL_SEED: u64 = 0x0b07_3a7c_5eed;

/// The language a person writes in; picks which scenarios they follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    En,
    Uk,
    Ru,
}

impl Lang {
    /// The ISO 639-1 code sent in `user.lang`.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Uk => "uk",
            Lang::Ru => "ru",
        }
    }
}

/// One simulated person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Person {
    /// Position in the pool; the base of the person's user ids.
    pub(crate) index: usize,
    /// Display name as the provider reports it ("Олена К.", "Liam Walker", "Emma").
    pub(crate) name: String,
    /// First name, used by the bots' greetings.
    pub(crate) first_name: &'static str,
    /// The language the person writes in (always known to the simulator).
    pub(crate) writes: Lang,
    /// Whether the provider reports `user.lang`.
    pub(crate) reports_lang: bool,
    /// `"male"` / `"female"` when the provider reports it.
    pub(crate) gender: Option<&'static str>,
    /// Avatar URL when the person has one.
    pub(crate) avatar: Option<String>,
}

impl Person {
    /// The `user` object of an event on `provider`.
    pub(crate) fn to_json(&self, provider: &str) -> serde_json::Value {
        let mut user = serde_json::Map::new();
        user.insert("id".into(), user_id(self.index, provider).into());
        user.insert("name".into(), self.name.clone().into());
        if let Some(avatar) = &self.avatar {
            user.insert("avatar".into(), avatar.clone().into());
        }
        if let Some(gender) = self.gender {
            user.insert("gender".into(), gender.into());
        }
        if self.reports_lang {
            user.insert("lang".into(), self.writes.code().into());
        }
        serde_json::Value::Object(user)
    }
}

const LATIN_FEMALE: &[&str] = &[
    "Emma",
    "Olivia",
    "Sophia",
    "Mia",
    "Charlotte",
    "Amelia",
    "Grace",
    "Chloe",
    "Lucy",
    "Hannah",
    "Anna",
    "Julia",
    "Laura",
    "Sarah",
    "Emily",
    "Zoe",
];
const LATIN_MALE: &[&str] = &[
    "Liam", "Noah", "James", "Oliver", "Lucas", "Ethan", "Jack", "Daniel", "Henry", "Leo", "Adam",
    "Martin", "Thomas", "David", "Ryan", "Max",
];
const LATIN_LAST: &[&str] = &[
    "Smith", "Johnson", "Brown", "Miller", "Wilson", "Taylor", "Clark", "Walker", "Young", "King",
    "Wright", "Green", "Baker", "Nelson", "Carter", "Novak", "Schmidt", "Kowalski", "Rossi",
    "Garcia",
];
const UK_FEMALE: &[&str] = &[
    "Олена",
    "Оксана",
    "Наталія",
    "Ірина",
    "Тетяна",
    "Юлія",
    "Марія",
    "Софія",
    "Анастасія",
    "Катерина",
    "Дарина",
    "Вікторія",
    "Галина",
    "Ольга",
    "Христина",
];
const UK_MALE: &[&str] = &[
    "Андрій",
    "Олександр",
    "Дмитро",
    "Сергій",
    "Тарас",
    "Богдан",
    "Микола",
    "Іван",
    "Василь",
    "Юрій",
    "Остап",
    "Максим",
    "Євген",
    "Олег",
    "Ярослав",
];
/// Ukrainian surnames in -енко, -ук, -ник etc. do not change with gender.
const UK_LAST: &[&str] = &[
    "Коваленко",
    "Шевченко",
    "Бондаренко",
    "Ткаченко",
    "Кравченко",
    "Олійник",
    "Мельник",
    "Бойко",
    "Савченко",
    "Литвиненко",
    "Мороз",
    "Поліщук",
    "Гнатюк",
    "Левченко",
    "Костенко",
];
const RU_FEMALE: &[&str] = &[
    "Анна",
    "Екатерина",
    "Мария",
    "Елена",
    "Ольга",
    "Татьяна",
    "Светлана",
    "Юлия",
    "Наталья",
    "Ксения",
];
const RU_MALE: &[&str] = &[
    "Алексей",
    "Дмитрий",
    "Сергей",
    "Михаил",
    "Иван",
    "Николай",
    "Павел",
    "Артём",
    "Владимир",
    "Игорь",
];
/// Russian surnames: (masculine, feminine).
const RU_LAST: &[(&str, &str)] = &[
    ("Иванов", "Иванова"),
    ("Смирнов", "Смирнова"),
    ("Кузнецов", "Кузнецова"),
    ("Попов", "Попова"),
    ("Соколов", "Соколова"),
    ("Морозов", "Морозова"),
    ("Волков", "Волкова"),
    ("Лебедев", "Лебедева"),
    ("Новиков", "Новикова"),
    ("Фёдоров", "Фёдорова"),
];

/// A random element of a non-empty constant list ("" / the first for an empty one).
pub(crate) fn pick<T: Copy + Default>(rng: &mut fastrand::Rng, items: &[T]) -> T {
    if items.is_empty() {
        return T::default();
    }
    items
        .get(rng.usize(..items.len()))
        .copied()
        .unwrap_or_default()
}

/// Builds the pool: about half Latin names, 30 % Ukrainian, 20 % Russian.
pub(crate) fn pool() -> Vec<Person> {
    let mut rng = fastrand::Rng::with_seed(POOL_SEED);
    (0..POOL_SIZE)
        .map(|index| person(&mut rng, index))
        .collect()
}

fn person(rng: &mut fastrand::Rng, index: usize) -> Person {
    let female = rng.bool();
    let roll = rng.u32(..100);
    let (writes, first_name, last_name) = if roll < 50 {
        let first = pick(rng, if female { LATIN_FEMALE } else { LATIN_MALE });
        (Lang::En, first, pick(rng, LATIN_LAST))
    } else if roll < 80 {
        let first = pick(rng, if female { UK_FEMALE } else { UK_MALE });
        (Lang::Uk, first, pick(rng, UK_LAST))
    } else {
        let first = pick(rng, if female { RU_FEMALE } else { RU_MALE });
        let (masculine, feminine) = pick(rng, RU_LAST);
        (Lang::Ru, first, if female { feminine } else { masculine })
    };
    // "First Last", "First L." or just "First", as people fill in their profiles.
    let name = match rng.u32(..10) {
        0..=4 => format!("{first_name} {last_name}"),
        5..=8 => match last_name.chars().next() {
            Some(initial) => format!("{first_name} {initial}."),
            None => first_name.to_owned(),
        },
        _ => first_name.to_owned(),
    };
    let gender = (rng.u32(..100) < 60).then_some(if female { "female" } else { "male" });
    let reports_lang = rng.u32(..100) < 50;
    let avatar =
        (rng.u32(..100) < 75).then(|| format!("https://example.org/avatars/{index:03}.jpg"));
    Person {
        index,
        name,
        first_name,
        writes,
        reports_lang,
        gender,
        avatar,
    }
}

/// The id under which person `index` is known on `provider`: each service has its own
/// style of id, and the same person has different ids on different services.
pub(crate) fn user_id(index: usize, provider: &str) -> String {
    let salt: u64 = match provider {
        "telegram" => 1,
        "viber" => 2,
        "messenger" => 3,
        "web" => 4,
        _ => 5,
    };
    let mixed = splitmix64((index as u64).wrapping_mul(8).wrapping_add(salt));
    match provider {
        "telegram" => (100_000_000 + mixed % 900_000_000).to_string(),
        "messenger" => (1_000_000_000_000_000 + mixed % 9_000_000_000_000_000).to_string(),
        "viber" => format!("vb{:012x}", mixed & 0xffff_ffff_ffff),
        "web" => format!("web-{:010x}", mixed & 0xff_ffff_ffff),
        other => format!("{other}-{index}"),
    }
}

/// A good 64-bit mixer, so ids look random but stay stable.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn is_cyrillic(s: &str) -> bool {
        s.chars().any(|c| ('\u{0400}'..='\u{04FF}').contains(&c))
    }

    #[test]
    fn pool_is_fixed_and_mixed() {
        let pool = pool();
        assert_eq!(pool.len(), POOL_SIZE);
        assert_eq!(pool, super::pool(), "the pool must not depend on anything");
        let cyrillic = pool.iter().filter(|p| is_cyrillic(&p.name)).count();
        assert!(cyrillic > 60, "Cyrillic names: {cyrillic}");
        assert!(
            pool.iter()
                .any(|p| p.writes == Lang::Uk && is_cyrillic(&p.name))
        );
        assert!(
            pool.iter()
                .any(|p| p.writes == Lang::Ru && is_cyrillic(&p.name))
        );
        assert!(
            pool.iter()
                .any(|p| p.writes == Lang::En && p.name.is_ascii())
        );
        assert!(pool.iter().any(|p| p.gender.is_some()));
        assert!(pool.iter().any(|p| p.gender.is_none()));
        assert!(pool.iter().any(|p| p.reports_lang));
        assert!(pool.iter().any(|p| !p.reports_lang));
        for p in &pool {
            if let Some(avatar) = &p.avatar {
                assert!(avatar.starts_with("https://example.org/"), "{avatar}");
            }
            if p.writes != Lang::En {
                assert!(is_cyrillic(&p.name), "{}", p.name);
            }
        }
    }

    #[test]
    fn user_ids_are_unique_per_provider() {
        for provider in ["telegram", "viber", "messenger", "web"] {
            let ids: HashSet<String> = (0..POOL_SIZE).map(|i| user_id(i, provider)).collect();
            assert_eq!(ids.len(), POOL_SIZE, "{provider}");
            assert!(ids.iter().all(|id| !id.is_empty() && id.len() <= 256));
        }
        assert_ne!(user_id(7, "telegram"), user_id(7, "messenger"));
    }
}
