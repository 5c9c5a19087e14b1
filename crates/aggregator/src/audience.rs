//! The audience operators keep for a bot: its roles and tags (labels), and per user the
//! role, tags, Subscriber flag, information fields, and the name and gender that stand
//! over what channels send.
//!
//! Every value is the latest edit by event time, ties broken by a hash of the event id,
//! so the outcome never depends on the order edits arrive in (like modes). Users and
//! edits refer to labels by key, so renaming a tag is one event however many users
//! carry it, and deleting one takes it off every user at once.

use std::collections::{BTreeMap, HashMap};

use botwatch_event::{Event, Label, LabelOf, UserEdit};

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// When an edit was made: its event time, then a hash of its id (FNV-1a: the same on
/// every node, unlike the hashers of the maps).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub(crate) struct Stamp {
    ms: i64,
    tie: u64,
}

impl Stamp {
    pub(crate) fn of(event: &Event) -> Stamp {
        let tie = event.id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Stamp {
            ms: event.ts_millis(),
            tie,
        }
    }
}

/// A value and the edit that set it; a later edit replaces it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Set<T> {
    at: Stamp,
    value: T,
}

/// Sets `slot` to `value` when `at` is later than what set it; true when it did.
fn offer<T>(slot: &mut Option<Set<T>>, at: Stamp, value: T) -> bool {
    if slot.as_ref().is_some_and(|s| s.at >= at) {
        return false;
    }
    *slot = Some(Set { at, value });
    true
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct LabelEntry {
    of: LabelOf,
    key: Box<str>,
    /// `None`: deleted, or not defined yet (an edit arrived before the definition).
    name: Option<Set<Option<Box<str>>>>,
}

impl LabelEntry {
    fn name(&self) -> Option<&str> {
        self.name.as_ref().and_then(|n| n.value.as_deref())
    }
}

/// One user's audience record (only users an operator edited have one). About 130
/// bytes and its few tags: small vectors, not maps (a map's first node alone is a few
/// hundred bytes), and the rare name and gender boxed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Record {
    user: u32,
    /// A label's number; `None`: no role.
    role: Option<Set<Option<u32>>>,
    subscriber: Option<Set<bool>>,
    /// Empty: the channels' value again.
    name: Option<Box<Set<Box<str>>>>,
    gender: Option<Box<Set<Box<str>>>>,
    /// Label number → carried or not, by the latest edit of that tag; by number.
    tags: Vec<(u32, Set<bool>)>,
    /// Field → value (empty: removed), by the latest edit of that field; by name.
    fields: Vec<(Box<str>, Set<Box<str>>)>,
}

/// What the users table's scan reads of a record, in 16 bytes kept beside the records
/// (same numbers), so a scan of a million users streams through them instead of the
/// records and their tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hot {
    /// A bit per carried tag numbered below 64.
    mask: u64,
    /// The role's label number; `u32::MAX`: none.
    role: u32,
    /// The Subscriber flag an operator set, if one did.
    subscriber: Option<bool>,
    /// Carries a tag numbered 64 or more (then the record's tags are read).
    more: bool,
}

impl Hot {
    fn of(r: &Record) -> Hot {
        let carried = || r.tags.iter().filter(|(_, s)| s.value).map(|(n, _)| *n);
        Hot {
            mask: carried().filter(|&n| n < 64).fold(0, |m, n| m | 1 << n),
            role: r.role.as_ref().and_then(|s| s.value).unwrap_or(u32::MAX),
            subscriber: r.subscriber.as_ref().map(|s| s.value),
            more: carried().any(|n| n >= 64),
        }
    }

    /// The Subscriber flag an operator set, if one did.
    pub(crate) fn subscriber(self) -> Option<bool> {
        self.subscriber
    }

    /// The role's label number, when `alive` says it still exists.
    pub(crate) fn role(self, alive: &[bool]) -> Option<u32> {
        alive
            .get(self.role as usize)
            .copied()
            .unwrap_or(false)
            .then_some(self.role)
    }
}

/// Offers `value` for `key` in a small map kept as a vector sorted by key.
fn offer_in<K: Ord, V>(entries: &mut Vec<(K, Set<V>)>, key: K, at: Stamp, value: V) {
    match entries.binary_search_by(|(k, _)| k.cmp(&key)) {
        Ok(i) => {
            if entries[i].1.at < at {
                entries[i].1 = Set { at, value };
            }
        }
        Err(i) => entries.insert(i, (key, Set { at, value })),
    }
}

/// [`offer`] for a boxed slot.
fn offer_boxed<T>(slot: &mut Option<Box<Set<T>>>, at: Stamp, value: T) -> bool {
    if slot.as_ref().is_some_and(|s| s.at >= at) {
        return false;
    }
    *slot = Some(Box::new(Set { at, value }));
    true
}

/// What an edit changed of the values the figures index.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Changed {
    pub(crate) name: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Audience {
    labels: Vec<LabelEntry>,
    records: Vec<Record>,
    // Derived, rebuilt after a snapshot is loaded.
    label_of_key: Map<Box<str>, u32>,
    /// Per user number: its record's number (`u32::MAX`: none).
    record_of: Vec<u32>,
    /// Per record: what a scan reads of it.
    hot: Vec<Hot>,
    /// Ids of the latest audience events applied (so a request can wait to see its
    /// own write); not kept in snapshots.
    recent: std::collections::VecDeque<Box<str>>,
}

/// How many audience event ids [`Audience::saw`] remembers.
const RECENT: usize = 4096;

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored<L, R> {
    labels: L,
    records: R,
}

impl serde::Serialize for Audience {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Stored {
            labels: &self.labels,
            records: &self.records,
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Audience {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Audience, D::Error> {
        let s = Stored::<Vec<LabelEntry>, Vec<Record>>::deserialize(d)?;
        // Derived tables are rebuilt once the figures checked what was read
        // (`rebuild`, from `BotFigures`): a record of an unknown user must be refused,
        // not sized for.
        Ok(Audience {
            labels: s.labels,
            records: s.records,
            ..Audience::default()
        })
    }
}

/// A role or tag as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelInfo {
    pub key: String,
    pub name: String,
}

impl Audience {
    /// Rebuilds what is derived (key index, record numbers, scan summaries) after a
    /// snapshot was read and checked.
    pub(crate) fn rebuild(&mut self) {
        self.label_of_key = self
            .labels
            .iter()
            .enumerate()
            .map(|(n, l)| (l.key.clone(), n as u32))
            .collect();
        self.record_of.clear();
        self.hot = self.records.iter().map(Hot::of).collect();
        for (n, r) in self.records.iter().enumerate() {
            let u = r.user as usize;
            if self.record_of.len() <= u {
                self.record_of.resize(u + 1, u32::MAX);
            }
            self.record_of[u] = n as u32;
        }
    }

    /// Whether what a snapshot gave back holds together, for `users` users.
    pub(crate) fn check(&self, users: usize) -> Result<(), String> {
        let labels = self.labels.len() as u32;
        for r in &self.records {
            if r.user as usize >= users {
                return Err(format!(
                    "an audience record of user {}, who is not known",
                    r.user
                ));
            }
            let role = r.role.as_ref().and_then(|s| s.value);
            if role
                .into_iter()
                .chain(r.tags.iter().map(|t| t.0))
                .any(|l| l >= labels)
            {
                return Err(format!("user {} carries a label that is not known", r.user));
            }
        }
        Ok(())
    }

    /// The number of label `key`, made (undefined) when it is new; `None` when the key
    /// belongs to a label of the other sort.
    fn label(&mut self, of: LabelOf, key: &str) -> Option<u32> {
        if let Some(&n) = self.label_of_key.get(key) {
            return (self.labels[n as usize].of == of).then_some(n);
        }
        let n = self.labels.len() as u32;
        self.labels.push(LabelEntry {
            of,
            key: key.into(),
            name: None,
        });
        self.label_of_key.insert(key.into(), n);
        Some(n)
    }

    /// Notes that event `id` was applied.
    pub(crate) fn note(&mut self, id: &str) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(id.into());
    }

    /// Whether audience event `id` was applied lately.
    pub(crate) fn saw(&self, id: &str) -> bool {
        self.recent.iter().rev().any(|r| **r == *id)
    }

    /// A role or tag defined, renamed or deleted.
    pub(crate) fn apply_label(&mut self, at: Stamp, label: &Label) {
        if let Some(n) = self.label(label.of, &label.key) {
            let name = label.name.as_deref().map(Into::into);
            offer(&mut self.labels[n as usize].name, at, name);
        }
    }

    fn record_mut(&mut self, user: u32) -> &mut Record {
        let u = user as usize;
        if self.record_of.len() <= u {
            self.record_of.resize(u + 1, u32::MAX);
        }
        if self.record_of[u] == u32::MAX {
            self.record_of[u] = self.records.len() as u32;
            self.records.push(Record {
                user,
                ..Record::default()
            });
        }
        let n = self.record_of[u] as usize;
        &mut self.records[n]
    }

    /// What a scan reads of user `user`'s record, when it has one.
    pub(crate) fn hot(&self, user: u32) -> Option<Hot> {
        let n = *self.record_of.get(user as usize)?;
        self.hot.get(n as usize).copied()
    }

    /// Per label number: whether it still exists (a scan's lookup table).
    pub(crate) fn alive(&self) -> Vec<bool> {
        self.labels.iter().map(|l| l.name().is_some()).collect()
    }

    fn record(&self, user: u32) -> Option<&Record> {
        let n = *self.record_of.get(user as usize)?;
        self.records.get(n as usize)
    }

    /// One user's edit.
    pub(crate) fn apply_edit(&mut self, user: u32, at: Stamp, edit: &UserEdit) -> Changed {
        let role = match edit.role.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(key) => self.label(LabelOf::Role, key).map(Some),
        };
        let add: Vec<u32> = edit
            .add_tags
            .iter()
            .filter_map(|k| self.label(LabelOf::Tag, k))
            .collect();
        let remove: Vec<u32> = edit
            .remove_tags
            .iter()
            .filter_map(|k| self.label(LabelOf::Tag, k))
            .collect();
        let r = self.record_mut(user);
        let mut changed = Changed::default();
        if let Some(role) = role {
            offer(&mut r.role, at, role);
        }
        if let Some(s) = edit.subscriber {
            offer(&mut r.subscriber, at, s);
        }
        if let Some(name) = &edit.name {
            changed.name = offer_boxed(&mut r.name, at, name.as_str().into());
        }
        if let Some(gender) = &edit.gender {
            offer_boxed(&mut r.gender, at, gender.as_str().into());
        }
        for (tags, carried) in [(add, true), (remove, false)] {
            for tag in tags {
                offer_in(&mut r.tags, tag, at, carried);
            }
        }
        for (field, value) in &edit.fields {
            offer_in(
                &mut r.fields,
                field.as_str().into(),
                at,
                value.as_str().into(),
            );
        }
        let hot = Hot::of(r);
        let n = self.record_of[user as usize] as usize;
        if self.hot.len() <= n {
            self.hot.resize(n + 1, hot);
        }
        self.hot[n] = hot;
        changed
    }

    fn live(&self, n: u32) -> Option<&str> {
        self.labels.get(n as usize)?.name()
    }

    /// User `user`'s role (a label number), when it has one that still exists.
    pub(crate) fn role_of(&self, user: u32) -> Option<u32> {
        let n = self.record(user)?.role.as_ref()?.value?;
        self.live(n).map(|_| n)
    }

    /// User `user`'s tags (label numbers) that still exist.
    pub(crate) fn tags_of(&self, user: u32) -> Vec<u32> {
        let mut tags = Vec::new();
        if let Some(hot) = self.hot(user) {
            self.each_tag(user, hot, &self.alive(), |t| tags.push(t));
        }
        tags
    }

    /// Calls `f` with each tag user `user` carries that still exists, for a scan, from
    /// what it read of the
    /// user (`hot`) and its table of labels that exist: no allocation, and no pointer
    /// followed for tags numbered below 64.
    pub(crate) fn each_tag(&self, user: u32, hot: Hot, alive: &[bool], mut f: impl FnMut(u32)) {
        let live = |n: u32| alive.get(n as usize).copied().unwrap_or(false);
        if hot.more {
            for (n, s) in self.record(user).into_iter().flat_map(|r| &r.tags) {
                if s.value && live(*n) {
                    f(*n);
                }
            }
            return;
        }
        let mut bits = hot.mask;
        while bits != 0 {
            let n = bits.trailing_zeros();
            bits &= bits - 1;
            if live(n) {
                f(n);
            }
        }
    }

    /// The Subscriber flag an operator set, if one did.
    pub(crate) fn subscriber(&self, user: u32) -> Option<bool> {
        Some(self.record(user)?.subscriber.as_ref()?.value)
    }

    /// The name an operator gave, standing over the channels'.
    pub(crate) fn name(&self, user: u32) -> Option<&str> {
        let name = &self.record(user)?.name.as_ref()?.value;
        (!name.is_empty()).then_some(&**name)
    }

    pub(crate) fn gender(&self, user: u32) -> Option<&str> {
        let gender = &self.record(user)?.gender.as_ref()?.value;
        (!gender.is_empty()).then_some(&**gender)
    }

    pub(crate) fn fields(&self, user: u32) -> BTreeMap<String, String> {
        self.record(user)
            .into_iter()
            .flat_map(|r| r.fields.iter())
            .filter(|(_, v)| !v.value.is_empty())
            .map(|(k, v)| (k.to_string(), v.value.to_string()))
            .collect()
    }

    /// A label's name, while it exists.
    pub(crate) fn label_name(&self, n: u32) -> Option<&str> {
        self.live(n)
    }

    /// Whether label number `n` is a role or a tag as `of` says.
    pub(crate) fn is_of(&self, n: u32, of: LabelOf) -> bool {
        self.labels.get(n as usize).is_some_and(|l| l.of == of)
    }

    /// Label number `n`'s key (`n` from [`find`](Self::find)).
    pub(crate) fn key(&self, n: u32) -> &str {
        self.labels.get(n as usize).map_or("", |l| &l.key)
    }

    /// How many label numbers there are (facet counters are indexed by them).
    pub(crate) fn label_count(&self) -> usize {
        self.labels.len()
    }

    /// The bot's roles or tags that exist, by name.
    pub(crate) fn labels(&self, of: LabelOf) -> Vec<LabelInfo> {
        let mut list: Vec<LabelInfo> = self
            .labels
            .iter()
            .filter(|l| l.of == of)
            .filter_map(|l| {
                Some(LabelInfo {
                    key: l.key.to_string(),
                    name: l.name()?.to_owned(),
                })
            })
            .collect();
        list.sort_by(|a, b| (&a.name, &a.key).cmp(&(&b.name, &b.key)));
        list
    }

    /// The number of the role or tag named `name` (the lowest key when two share a
    /// name, as [`canonical`](Self::canonical) picks it).
    #[cfg(test)]
    fn find(&self, of: LabelOf, name: &str) -> Option<u32> {
        self.find_all(of, name)
            .min_by(|&a, &b| self.key(a).cmp(self.key(b)))
    }

    /// Every role or tag named `name`: two requests may create the same name at once
    /// (or rename two labels to one), and then the name stands for all of them —
    /// filters match any, facets count a user once, a rename or delete takes all.
    pub(crate) fn find_all<'a>(
        &'a self,
        of: LabelOf,
        name: &'a str,
    ) -> impl Iterator<Item = u32> + 'a {
        self.labels
            .iter()
            .enumerate()
            .filter(move |(_, l)| l.of == of && l.name() == Some(name))
            .map(|(n, _)| n as u32)
    }

    /// Per label number: the number that stands for its name (the lowest key among
    /// the labels of that sort and name), or `u32::MAX` for a label that is gone.
    pub(crate) fn canonical(&self) -> Vec<u32> {
        let mut first: HashMap<(LabelOf, &str), u32> = HashMap::new();
        for (n, l) in self.labels.iter().enumerate() {
            if let Some(name) = l.name() {
                let slot = first.entry((l.of, name)).or_insert(n as u32);
                if self.key(n as u32) < self.key(*slot) {
                    *slot = n as u32;
                }
            }
        }
        self.labels
            .iter()
            .map(|l| match l.name() {
                Some(name) => first.get(&(l.of, name)).copied().unwrap_or(u32::MAX),
                None => u32::MAX,
            })
            .collect()
    }

    /// The keys of the tags user `user` carries (that still exist).
    pub(crate) fn tag_keys(&self, user: u32) -> Vec<String> {
        self.tags_of(user)
            .into_iter()
            .map(|n| self.key(n).to_owned())
            .collect()
    }

    /// Users whose name an operator set (the name index must use theirs).
    pub(crate) fn named_users(&self) -> impl Iterator<Item = (u32, &str)> {
        self.records
            .iter()
            .filter_map(|r| Some((r.user, self.name(r.user)?)))
    }

    /// When a label's name was set (tests).
    #[cfg(test)]
    fn label_ms(&self, n: u32) -> Option<i64> {
        Some(self.labels[n as usize].name.as_ref()?.at.ms)
    }
}

#[cfg(test)]
mod tests {
    use botwatch_event::{AudienceChange, EventKind};
    use chrono::TimeZone;

    use super::*;

    fn event(id: &str, ms: i64) -> Event {
        let mut e = Event::about_dialog(id.to_owned(), EventKind::Audience, "b", "p", "u");
        e.ts = chrono::Utc.timestamp_millis_opt(ms).single().expect("time");
        e
    }

    fn label(of: LabelOf, key: &str, name: Option<&str>) -> AudienceChange {
        AudienceChange::Label(Label {
            of,
            key: key.to_owned(),
            name: name.map(str::to_owned),
        })
    }

    fn apply(a: &mut Audience, user: u32, id: &str, ms: i64, change: AudienceChange) {
        let at = Stamp::of(&event(id, ms));
        match change {
            AudienceChange::Label(l) => a.apply_label(at, &l),
            AudienceChange::Edit(e) => {
                a.apply_edit(user, at, &e);
            }
        }
    }

    fn edit(f: impl FnOnce(&mut UserEdit)) -> AudienceChange {
        let mut e = UserEdit::default();
        f(&mut e);
        AudienceChange::Edit(e)
    }

    #[test]
    fn the_latest_edit_wins_in_any_order() {
        let changes = vec![
            ("1", 0, 10, label(LabelOf::Tag, "t1", Some("VIP"))),
            ("2", 0, 20, label(LabelOf::Tag, "t1", Some("Клієнти"))),
            ("3", 0, 11, label(LabelOf::Role, "r1", Some("admin"))),
            ("4", 5, 30, edit(|e| e.add_tags.push("t1".to_owned()))),
            ("5", 5, 31, edit(|e| e.role = Some("r1".to_owned()))),
            ("6", 5, 32, edit(|e| e.subscriber = Some(false))),
            ("7", 5, 40, edit(|e| e.remove_tags.push("t1".to_owned()))),
            (
                "8",
                5,
                35,
                edit(|e| {
                    e.fields.insert("phone".to_owned(), "+1".to_owned());
                }),
            ),
            ("9", 6, 36, edit(|e| e.add_tags.push("t1".to_owned()))),
            ("10", 6, 37, edit(|e| e.name = Some("Олена".to_owned()))),
        ];
        let mut forward = Audience::default();
        for (id, u, ms, c) in changes.iter().cloned() {
            apply(&mut forward, u, id, ms, c);
        }
        let mut backward = Audience::default();
        for (id, u, ms, c) in changes.into_iter().rev() {
            apply(&mut backward, u, id, ms, c);
        }
        for a in [&forward, &backward] {
            let tag = a.find(LabelOf::Tag, "Клієнти").expect("renamed tag");
            assert_eq!(a.find(LabelOf::Tag, "VIP"), None, "the old name is gone");
            assert!(a.tags_of(5).is_empty(), "removed after it was added");
            assert_eq!(a.tags_of(6), [tag]);
            assert_eq!(a.role_of(5).and_then(|r| a.label_name(r)), Some("admin"));
            assert_eq!(a.subscriber(5), Some(false));
            assert_eq!(a.subscriber(6), None);
            assert_eq!(a.fields(5).get("phone").map(String::as_str), Some("+1"));
            assert_eq!(a.name(6), Some("Олена"));
            assert_eq!(a.label_ms(tag), Some(20));
        }
    }

    #[test]
    fn labels_sharing_a_name_stand_for_one() {
        let mut a = Audience::default();
        apply(&mut a, 0, "1", 1, label(LabelOf::Tag, "t-b", Some("VIP")));
        apply(&mut a, 0, "2", 1, label(LabelOf::Tag, "t-a", Some("VIP")));
        apply(&mut a, 0, "3", 1, label(LabelOf::Tag, "t-c", Some("New")));
        assert_eq!(
            a.find(LabelOf::Tag, "VIP").map(|n| a.key(n)),
            Some("t-a"),
            "the lowest key"
        );
        assert_eq!(a.find_all(LabelOf::Tag, "VIP").count(), 2);
        // Both labels count under the first one's number; the other name under its own.
        assert_eq!(a.canonical(), [1, 1, 2]);
        apply(&mut a, 0, "4", 2, label(LabelOf::Tag, "t-a", None));
        assert_eq!(
            a.canonical(),
            [0, u32::MAX, 2],
            "the other one stands for the name"
        );
    }

    #[test]
    fn a_deleted_label_leaves_every_user_and_a_snapshot_keeps_all() {
        let mut a = Audience::default();
        apply(&mut a, 0, "1", 1, label(LabelOf::Role, "r1", Some("admin")));
        apply(&mut a, 2, "2", 2, edit(|e| e.role = Some("r1".to_owned())));
        apply(&mut a, 3, "3", 2, edit(|e| e.role = Some("r1".to_owned())));
        assert_eq!(a.role_of(2), Some(0));
        let bytes = serde_json::to_vec(&a).expect("encode");
        let mut back: Audience = serde_json::from_slice(&bytes).expect("decode");
        assert!(back.check(4).is_ok());
        back.rebuild();
        assert_eq!(back.role_of(3), Some(0));
        assert!(back.check(4).is_ok());
        assert!(back.check(3).is_err(), "user 3 unknown");
        apply(&mut a, 0, "4", 3, label(LabelOf::Role, "r1", None));
        assert_eq!((a.role_of(2), a.role_of(3)), (None, None));
        assert!(a.labels(LabelOf::Role).is_empty());
        // A key of the other sort is not taken as a role.
        apply(&mut a, 0, "5", 4, label(LabelOf::Tag, "t1", Some("x")));
        apply(&mut a, 2, "6", 5, edit(|e| e.role = Some("t1".to_owned())));
        assert_eq!(a.role_of(2), None);
    }
}
