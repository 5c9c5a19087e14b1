//! The demo bots and what is said to them: per bot, several scripted scenarios in
//! English, Ukrainian and Russian. Common phrases ("/start", "Привіт", "price",
//! "Where is my order?") recur across scenarios, so "top messages" has a clear top.
//!
//! Texts may hold `{name}` (the user's first name) and `{order}` (an order number
//! fixed for one dialog).

use crate::names::Lang;

/// One simulated bot.
#[derive(Debug)]
pub(crate) struct Bot {
    /// The bot's slug (`bot` of its events).
    pub(crate) slug: &'static str,
    /// Provider slugs the bot is reachable on.
    pub(crate) providers: &'static [&'static str],
    /// Relative share of new dialogs this bot gets.
    pub(crate) weight: u32,
    pub(crate) scenarios: &'static [Scenario],
}

/// A scripted talk: the user says one of the `user` variants, the bot answers.
#[derive(Debug)]
pub(crate) struct Scenario {
    pub(crate) lang: Lang,
    pub(crate) turns: &'static [Turn],
}

/// One exchange of a scenario.
#[derive(Debug)]
pub(crate) struct Turn {
    /// What the user may write (one variant is chosen).
    pub(crate) user: &'static [&'static str],
    /// Something the user sends along (a screenshot).
    pub(crate) user_attach: Option<Attach>,
    /// The bot's answer.
    pub(crate) bot: &'static str,
    /// A card or file in the bot's answer.
    pub(crate) bot_attach: Option<Attach>,
}

/// An attachment as in API.md; texts may hold `{order}`.
#[derive(Debug)]
pub(crate) enum Attach {
    File {
        url: &'static str,
        name: &'static str,
        mime: &'static str,
        size: u64,
    },
    Card {
        title: &'static str,
        subtitle: &'static str,
        image: &'static str,
        /// (title, payload)
        buttons: &'static [(&'static str, &'static str)],
    },
}

/// Base for the struct-update syntax in the tables below.
const T: Turn = Turn {
    user: &[],
    user_attach: None,
    bot: "",
    bot_attach: None,
};

/// All simulated bots.
pub(crate) static BOTS: &[Bot] = &[HELPDESK, SHOP, NEWS];

const ORDER_CARD: Attach = Attach::Card {
    title: "Order #{order}",
    subtitle: "Shipped",
    image: "https://example.org/img/parcel.jpg",
    buttons: &[("Track", "track:{order}"), ("Contact support", "support")],
};

const HELPDESK: Bot = Bot {
    slug: "helpdesk",
    providers: &["telegram"],
    weight: 4,
    scenarios: &[
        Scenario {
            lang: Lang::En,
            turns: &[
                Turn {
                    user: &["/start", "Hi", "Hello", "hi"],
                    bot: "Hi {name}! I'm the helpdesk bot. Ask me about orders, returns or payments.",
                    ..T
                },
                Turn {
                    user: &[
                        "Where is my order?",
                        "where is my order?",
                        "Where is my order",
                    ],
                    bot: "Your order #{order} has been shipped and should arrive in 2–3 days.",
                    bot_attach: Some(ORDER_CARD),
                    ..T
                },
                Turn {
                    user: &["Thanks", "Thank you!", "thanks"],
                    bot: "You're welcome! Anything else?",
                    ..T
                },
            ],
        },
        Scenario {
            lang: Lang::En,
            turns: &[
                Turn {
                    user: &["I want a refund", "refund", "How do I return an item?"],
                    bot: "Sorry to hear that. What is the order number?",
                    ..T
                },
                Turn {
                    user: &["#{order}", "Order {order}", "{order}"],
                    bot: "Got it. Here is the return form: print it and put it in the parcel.",
                    bot_attach: Some(Attach::File {
                        url: "https://example.org/files/return-form.pdf",
                        name: "return-form.pdf",
                        mime: "application/pdf",
                        size: 48_211,
                    }),
                    ..T
                },
                Turn {
                    user: &["ok", "Thanks", "OK thanks"],
                    bot: "Your refund will be processed within 5 business days.",
                    ..T
                },
            ],
        },
        Scenario {
            lang: Lang::En,
            turns: &[
                Turn {
                    user: &["/start", "Hello"],
                    bot: "Hi {name}! How can I help?",
                    ..T
                },
                Turn {
                    user: &["I need a human", "operator", "Talk to a person"],
                    bot: "I'm connecting you with an operator. Please wait a moment.",
                    ..T
                },
                Turn {
                    user: &["Hello?", "Is anyone there?"],
                    bot: "An operator will reply soon. The average wait is 3 minutes.",
                    ..T
                },
            ],
        },
        Scenario {
            lang: Lang::En,
            turns: &[
                Turn {
                    user: &["My payment failed", "payment failed", "Card declined"],
                    bot: "Sorry about that! Could you send a screenshot of the error?",
                    ..T
                },
                Turn {
                    user: &["Here is a screenshot", "Here"],
                    user_attach: Some(Attach::File {
                        url: "https://example.org/uploads/screenshot.png",
                        name: "screenshot.png",
                        mime: "image/png",
                        size: 183_402,
                    }),
                    bot: "Thanks. The bank declined the card; this guide shows what to check.",
                    bot_attach: Some(Attach::File {
                        url: "https://example.org/files/payment-help.pdf",
                        name: "payment-help.pdf",
                        mime: "application/pdf",
                        size: 96_120,
                    }),
                },
                Turn {
                    user: &["It worked, thanks", "Thanks", "Still not working"],
                    bot: "Thanks for letting me know. I've noted it on your account.",
                    ..T
                },
            ],
        },
        Scenario {
            lang: Lang::Uk,
            turns: &[
                Turn {
                    user: &["Привіт", "Привіт!", "/start"],
                    bot: "Привіт, {name}! Я бот підтримки. Чим допомогти?",
                    ..T
                },
                Turn {
                    user: &[
                        "Де моє замовлення?",
                        "де моє замовлення",
                        "Де моє замовлення?",
                    ],
                    bot: "Замовлення #{order} вже в дорозі, очікуйте 2–3 дні.",
                    bot_attach: Some(Attach::Card {
                        title: "Замовлення #{order}",
                        subtitle: "Відправлено",
                        image: "https://example.org/img/parcel.jpg",
                        buttons: &[("Відстежити", "track:{order}")],
                    }),
                    ..T
                },
                Turn {
                    user: &["Дякую", "Дякую!", "дякую"],
                    bot: "Будь ласка! Гарного дня 🙂",
                    ..T
                },
            ],
        },
        Scenario {
            lang: Lang::Uk,
            turns: &[
                Turn {
                    user: &["Привіт", "Добрий день"],
                    bot: "Вітаю, {name}! Чим допомогти?",
                    ..T
                },
                Turn {
                    user: &["Хочу повернути товар", "Як повернути товар?"],
                    bot: "Заповніть, будь ласка, форму повернення та додайте її до посилки.",
                    bot_attach: Some(Attach::File {
                        url: "https://example.org/files/povernennia.pdf",
                        name: "povernennia.pdf",
                        mime: "application/pdf",
                        size: 51_007,
                    }),
                    ..T
                },
                Turn {
                    user: &["Дякую", "Дякую!"],
                    bot: "Гроші повернемо протягом 5 робочих днів.",
                    ..T
                },
            ],
        },
        Scenario {
            lang: Lang::Ru,
            turns: &[
                Turn {
                    user: &["Привет", "Здравствуйте", "/start"],
                    bot: "Здравствуйте, {name}! Чем могу помочь?",
                    ..T
                },
                Turn {
                    user: &["Где мой заказ?", "где мой заказ"],
                    bot: "Заказ #{order} отправлен, доставка 2–3 дня.",
                    bot_attach: Some(Attach::Card {
                        title: "Заказ #{order}",
                        subtitle: "Отправлен",
                        image: "https://example.org/img/parcel.jpg",
                        buttons: &[("Отследить", "track:{order}")],
                    }),
                    ..T
                },
                Turn {
                    user: &["Спасибо", "Спасибо!"],
                    bot: "Пожалуйста! Хорошего дня.",
                    ..T
                },
            ],
        },
    ],
};

const HEADPHONES_CARD: Attach = Attach::Card {
    title: "Wireless headphones",
    subtitle: "$59.90 · free delivery",
    image: "https://example.org/img/headphones.jpg",
    buttons: &[("Buy", "buy:headphones"), ("Details", "details:headphones")],
};

const SHOP: Bot = Bot {
    slug: "shop",
    providers: &["viber", "web"],
    weight: 4,
    scenarios: &[
        Scenario {
            lang: Lang::En,
            turns: &[
                Turn {
                    user: &["price", "Price", "How much is it?", "price?"],
                    bot: "Which product are you interested in? Here is today's bestseller.",
                    bot_attach: Some(HEADPHONES_CARD),
                    ..T
                },
                Turn {
                    user: &["headphones", "The headphones"],
                    bot: "Wireless headphones cost $59.90. Delivery is free over $50.",
                    ..T
                },
                Turn {
                    user: &["Add to cart", "buy"],
                    bot: "Added to your cart, {name}. Anything else?",
                    ..T
                },
            ],
        },
        Scenario {
            lang: Lang::En,
            turns: &[
                Turn {
                    user: &["/start", "Hi"],
                    bot: "Welcome to the shop, {name}! Type 'catalog' to browse or 'price' for prices.",
                    ..T
                },
                Turn {
                    user: &["catalog", "Catalog"],
                    bot: "Here is our catalog.",
                    bot_attach: Some(Attach::File {
                        url: "https://example.org/files/catalog-2026.pdf",
                        name: "catalog-2026.pdf",
                        mime: "application/pdf",
                        size: 1_245_880,
                    }),
                    ..T
                },
                Turn {
                    user: &["price", "Price"],
                    bot: "All prices are in the catalog; bestsellers start at $9.90.",
                    ..T
                },
            ],
        },
        Scenario {
            lang: Lang::En,
            turns: &[
                Turn {
                    user: &["delivery", "Do you deliver to Kyiv?", "Delivery options?"],
                    bot: "We deliver across Ukraine and the EU: courier 1–2 days, pickup points 2–4 days.",
                    ..T
                },
                Turn {
                    user: &["How much is delivery?", "price"],
                    bot: "Delivery is free for orders over $50, otherwise $4.90.",
                    ..T
                },
                Turn {
                    user: &["Thanks", "thanks"],
                    bot: "You're welcome!",
                    ..T
                },
            ],
        },
        Scenario {
            lang: Lang::En,
            turns: &[
                Turn {
                    user: &["Where is my order?", "where is my order?"],
                    bot: "Order #{order} is being packed and ships today.",
                    bot_attach: Some(ORDER_CARD),
                    ..T
                },
                Turn {
                    user: &["Thanks", "ok"],
                    bot: "You're welcome, {name}!",
                    ..T
                },
            ],
        },
        Scenario {
            lang: Lang::Uk,
            turns: &[
                Turn {
                    user: &["Привіт", "Привіт!"],
                    bot: "Вітаємо в магазині, {name}!",
                    ..T
                },
                Turn {
                    user: &["ціна", "Скільки коштує?", "Ціна"],
                    bot: "Ось наш хіт продажу.",
                    bot_attach: Some(Attach::Card {
                        title: "Бездротові навушники",
                        subtitle: "1 999 грн",
                        image: "https://example.org/img/headphones.jpg",
                        buttons: &[("Купити", "buy:headphones")],
                    }),
                    ..T
                },
                Turn {
                    user: &["Дякую", "дякую"],
                    bot: "Звертайтеся!",
                    ..T
                },
            ],
        },
        Scenario {
            lang: Lang::Uk,
            turns: &[
                Turn {
                    user: &["Доставка", "Як швидко доставите?"],
                    bot: "Новою поштою за 1–2 дні; безкоштовно від 1 500 грн.",
                    ..T
                },
                Turn {
                    user: &["Де моє замовлення?"],
                    bot: "Замовлення #{order} передано в доставку сьогодні.",
                    ..T
                },
            ],
        },
        Scenario {
            lang: Lang::Ru,
            turns: &[
                Turn {
                    user: &["Привет", "Здравствуйте"],
                    bot: "Добро пожаловать, {name}!",
                    ..T
                },
                Turn {
                    user: &["цена", "Сколько стоит?"],
                    bot: "Вот наш хит продаж.",
                    bot_attach: Some(Attach::Card {
                        title: "Беспроводные наушники",
                        subtitle: "1 999 грн",
                        image: "https://example.org/img/headphones.jpg",
                        buttons: &[("Купить", "buy:headphones")],
                    }),
                    ..T
                },
                Turn {
                    user: &["Спасибо"],
                    bot: "Обращайтесь!",
                    ..T
                },
            ],
        },
    ],
};

const NEWS_CARD: Attach = Attach::Card {
    title: "Heat wave ends this weekend",
    subtitle: "Weather · 2 min read",
    image: "https://example.org/img/weather.jpg",
    buttons: &[("Read", "read:weather"), ("More news", "more")],
};

const NEWS: Bot = Bot {
    slug: "news",
    providers: &["telegram", "messenger"],
    weight: 2,
    scenarios: &[
        Scenario {
            lang: Lang::En,
            turns: &[
                Turn {
                    user: &["/start"],
                    bot: "Hi {name}! I send a morning news digest. Type 'subscribe' to get it daily.",
                    ..T
                },
                Turn {
                    user: &["subscribe", "Subscribe"],
                    bot: "Done! You'll get the digest every morning at 8:00.",
                    ..T
                },
            ],
        },
        Scenario {
            lang: Lang::En,
            turns: &[
                Turn {
                    user: &["news", "Latest news", "What's new?"],
                    bot: "Top story today:",
                    bot_attach: Some(NEWS_CARD),
                    ..T
                },
                Turn {
                    user: &["more", "More"],
                    bot: "Here is today's digest.",
                    bot_attach: Some(Attach::File {
                        url: "https://example.org/files/digest.pdf",
                        name: "digest.pdf",
                        mime: "application/pdf",
                        size: 312_554,
                    }),
                    ..T
                },
            ],
        },
        Scenario {
            lang: Lang::En,
            turns: &[Turn {
                user: &["/stop", "unsubscribe"],
                bot: "You're unsubscribed. Come back any time with /start.",
                ..T
            }],
        },
        Scenario {
            lang: Lang::En,
            turns: &[
                Turn {
                    user: &["weather", "Weather in Kyiv"],
                    bot: "Kyiv: +18 °C, light rain in the evening.",
                    ..T
                },
                Turn {
                    user: &["Thanks", "thanks"],
                    bot: "Have a nice day, {name}!",
                    ..T
                },
            ],
        },
        Scenario {
            lang: Lang::Uk,
            turns: &[
                Turn {
                    user: &["Привіт", "/start"],
                    bot: "Привіт, {name}! Щоранку надсилаю дайджест новин.",
                    ..T
                },
                Turn {
                    user: &["новини", "Що нового?"],
                    bot: "Головне за сьогодні:",
                    bot_attach: Some(Attach::Card {
                        title: "Спека відступає на вихідних",
                        subtitle: "Погода · 2 хв",
                        image: "https://example.org/img/weather.jpg",
                        buttons: &[("Читати", "read:weather")],
                    }),
                    ..T
                },
                Turn {
                    user: &["підписатися", "Підписатися"],
                    bot: "Готово! Дайджест щоранку о 8:00.",
                    ..T
                },
            ],
        },
        Scenario {
            lang: Lang::Ru,
            turns: &[
                Turn {
                    user: &["Привет", "/start"],
                    bot: "Привет, {name}! Каждое утро присылаю дайджест новостей.",
                    ..T
                },
                Turn {
                    user: &["новости", "Что нового?"],
                    bot: "Главное за сегодня:",
                    bot_attach: Some(Attach::Card {
                        title: "Жара уходит на выходных",
                        subtitle: "Погода · 2 мин",
                        image: "https://example.org/img/weather.jpg",
                        buttons: &[("Читать", "read:weather")],
                    }),
                    ..T
                },
            ],
        },
    ],
};

impl Attach {
    /// The attachment object of an event, `{order}` filled in.
    pub(crate) fn to_json(&self, order: &str) -> serde_json::Value {
        match self {
            Attach::File {
                url,
                name,
                mime,
                size,
            } => serde_json::json!({
                "type": "file",
                "url": url,
                "name": name,
                "mime": mime,
                "size": size,
            }),
            Attach::Card {
                title,
                subtitle,
                image,
                buttons,
            } => serde_json::json!({
                "type": "card",
                "title": title.replace("{order}", order),
                "subtitle": subtitle.replace("{order}", order),
                "image": image,
                "buttons": buttons
                    .iter()
                    .map(|(title, payload)| serde_json::json!({
                        "title": title,
                        "payload": payload.replace("{order}", order),
                    }))
                    .collect::<Vec<_>>(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_is_complete() {
        assert!(!BOTS.is_empty());
        for bot in BOTS {
            assert!(!bot.providers.is_empty(), "{}", bot.slug);
            assert!(bot.weight > 0, "{}", bot.slug);
            assert!(
                bot.scenarios.iter().any(|s| s.lang == Lang::En),
                "{} needs an English scenario (the fallback)",
                bot.slug
            );
            for scenario in bot.scenarios {
                assert!(!scenario.turns.is_empty(), "{}", bot.slug);
                for turn in scenario.turns {
                    assert!(!turn.user.is_empty(), "{}", bot.slug);
                    assert!(turn.user.iter().all(|u| !u.trim().is_empty()));
                    assert!(!turn.bot.trim().is_empty(), "{}", bot.slug);
                }
            }
        }
    }
}
