//! The users table and the dialogs list: one pass over a bot's users that filters,
//! counts facets and keeps the best page in a small heap.
//!
//! A scan costs a few milliseconds for a million packed users and needs no index kept
//! up to date per event, which keeps `apply` fast; sorting by any column, cursors that
//! stay valid while figures move, and facets all come from the same pass.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::bot::{BotFigures, DialogCursor, NEVER, UserFigures};
use crate::names::{fold_name, has};

/// The columns the users table sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSort {
    /// The last message either way; users without messages come last.
    Last,
    Messages,
    Sessions,
    /// The name in lower case (the id for users without a name).
    Name,
}

/// Whether the bot or an operator answers a user.
pub use botwatch_event::Mode;

/// Filters of the users table: OR inside a group, AND across groups; an empty group
/// does not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// Any part of the name, any case (folded here).
    pub search: Option<String>,
    pub providers: Vec<String>,
    pub tags: Vec<String>,
    pub roles: Vec<String>,
    pub subscriber: Option<bool>,
    pub modes: Vec<Mode>,
}

/// A sort position: the key of the last row of a page and its user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCursor {
    pub key: CursorKey,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum CursorKey {
    Number(i64),
    Text(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersQuery {
    pub filter: UserFilter,
    pub sort: UserSort,
    pub descending: bool,
    pub limit: usize,
    /// Continue after this row.
    pub after: Option<UserCursor>,
}

/// Counts per filter value, each for the current search and the other groups' filters
/// (the group's own filter left out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facets {
    pub provider: Vec<(String, u64)>,
    pub tag: Vec<(String, u64)>,
    pub role: Vec<(String, u64)>,
    pub subscriber: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersPage {
    pub items: Vec<UserFigures>,
    /// Users that match, across all pages.
    pub total: u64,
    pub next: Option<UserCursor>,
    pub facets: Facets,
}

/// One row in the page being chosen, ordered as the page shows it.
struct Row<'a> {
    key: Key<'a>,
    id: &'a str,
    index: u32,
    descending: bool,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Key<'a> {
    Number(i64),
    Text(&'a [u8]),
}

impl Key<'_> {
    fn to_cursor(&self) -> CursorKey {
        match *self {
            Key::Number(n) => CursorKey::Number(n),
            Key::Text(t) => CursorKey::Text(t.to_vec()),
        }
    }
}

impl Row<'_> {
    /// Page order: ascending or descending by key, then by id the same way.
    fn page_cmp(&self, key: &Key<'_>, id: &str) -> Ordering {
        let o = self.key.cmp(key).then_with(|| self.id.cmp(id));
        if self.descending { o.reverse() } else { o }
    }
}

impl PartialEq for Row<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Row<'_> {}
impl PartialOrd for Row<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Row<'_> {
    /// The heap keeps the page's last row on top.
    fn cmp(&self, other: &Self) -> Ordering {
        self.page_cmp(&other.key, other.id)
    }
}

/// Users at which a scan splits in two threads.
const PARALLEL_FROM: usize = 200_000;

/// What a scan asks, worked out once and shared by its parts.
struct Scan<'q> {
    query: &'q UsersQuery,
    with_messages_only: bool,
    selecting: bool,
    facets: bool,
    wanted_tags: &'q [bool],
    wanted_roles: &'q [bool],
    wanted_providers: &'q [bool],
    alive: &'q [bool],
    canonical: &'q [u32],
    found: Option<&'q [u64]>,
    after: Option<(&'q Key<'q>, &'q str)>,
}

/// What one part of a scan found.
struct Part<'a> {
    provider_counts: Vec<u64>,
    tag_counts: Vec<u64>,
    role_counts: Vec<u64>,
    subscribers: u64,
    total: u64,
    heap: BinaryHeap<Row<'a>>,
    selected: Vec<String>,
}

impl<'a> Part<'a> {
    /// Keeps `row` when it is among the best `keep` so far.
    fn offer(&mut self, row: Row<'a>, keep: usize) {
        if self.heap.len() == keep {
            if self.heap.peek().is_some_and(|last| row >= *last) {
                return;
            }
            self.heap.pop();
        }
        self.heap.push(row);
    }

    /// Adds a later part (its users come after this one's).
    fn merge(&mut self, other: Part<'a>, keep: usize) {
        let add = |a: &mut Vec<u64>, b: Vec<u64>| {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        };
        add(&mut self.provider_counts, other.provider_counts);
        add(&mut self.tag_counts, other.tag_counts);
        add(&mut self.role_counts, other.role_counts);
        self.subscribers += other.subscribers;
        self.total += other.total;
        for row in other.heap {
            self.offer(row, keep);
        }
        self.selected.extend(other.selected);
    }
}

impl BotFigures {
    fn sort_key(&self, i: u32, sort: UserSort) -> Key<'_> {
        let u = &self.users[i as usize];
        match sort {
            UserSort::Last => Key::Number(u.last_ms),
            UserSort::Messages => Key::Number(i64::from(u.messages)),
            UserSort::Sessions => Key::Number(i64::from(u.sessions)),
            UserSort::Name => match self.names.folded(i) {
                [] => Key::Text(self.strings.get_short(&u.id).as_bytes()),
                folded => Key::Text(folded),
            },
        }
    }

    /// A page of the users table, its total and its facets.
    pub fn users(&self, query: &UsersQuery) -> UsersPage {
        self.scan(query, false, None)
    }

    /// The ids of every user that `filter` lets through, in the order they were first
    /// seen (what bulk edits, exports and broadcasts work on).
    pub fn select(&self, filter: &UserFilter) -> Vec<String> {
        let mut ids = Vec::new();
        self.scan(
            &UsersQuery {
                filter: filter.clone(),
                sort: UserSort::Last,
                descending: true,
                limit: 0,
                after: None,
            },
            false,
            Some(&mut ids),
        );
        ids
    }

    /// `selected`: also collect every matching user's id (then the page is empty).
    fn scan(
        &self,
        query: &UsersQuery,
        with_messages_only: bool,
        selected: Option<&mut Vec<String>>,
    ) -> UsersPage {
        self.scan_split(query, with_messages_only, selected, PARALLEL_FROM)
    }

    /// [`scan`](Self::scan), in two threads from `split_from` users.
    fn scan_split(
        &self,
        query: &UsersQuery,
        with_messages_only: bool,
        selected: Option<&mut Vec<String>>,
        split_from: usize,
    ) -> UsersPage {
        let f = &query.filter;
        // Tags and roles by name → by label number; a name no label has matches nobody.
        let labels = self.audience.label_count();
        let wanted = |of, names: &[String]| {
            let mut wanted = vec![false; labels];
            for n in names.iter().flat_map(|n| self.audience.find_all(of, n)) {
                wanted[n as usize] = true;
            }
            wanted
        };
        // Only the users table shows facets (not the dialogs list, not a selection).
        let facets = selected.is_none() && !with_messages_only;
        let wanted_tags = wanted(botwatch_event::LabelOf::Tag, &f.tags);
        let alive = self.audience.alive();
        // Labels sharing a name count as one: each under its name's first label, once
        // per user (`counted_for`: the last user counted under it).
        let canonical = self.audience.canonical();
        let wanted_roles = wanted(botwatch_event::LabelOf::Role, &f.roles);
        let search = f
            .search
            .as_deref()
            .map(fold_name)
            .filter(|s| !s.trim().is_empty());
        let found = search
            .as_deref()
            .map(|s| self.names.find(s, self.users.len()));
        let wanted_providers: Vec<bool> = self
            .providers
            .iter()
            .map(|p| f.providers.iter().any(|w| **w == **p))
            .collect();
        let after: Option<(Key<'_>, &str)> = query.after.as_ref().map(|c| {
            let key = match &c.key {
                CursorKey::Number(n) => Key::Number(*n),
                CursorKey::Text(t) => Key::Text(t),
            };
            (key, c.user.as_str())
        });

        let ctx = Scan {
            query,
            with_messages_only,
            selecting: selected.is_some(),
            facets,
            wanted_tags: &wanted_tags,
            wanted_roles: &wanted_roles,
            wanted_providers: &wanted_providers,
            alive: &alive,
            canonical: &canonical,
            found: found.as_deref(),
            after: after.as_ref().map(|(k, id)| (k, *id)),
        };
        // Two halves on two threads when there are many users: a scan reads every
        // user's record, and at a million of them that is memory-bound work that a
        // second core halves.
        let n = self.users.len();
        let mut part = if n >= split_from.max(2) {
            let half = n / 2;
            let (mut first, second) = std::thread::scope(|scope| {
                let second = scope.spawn(|| self.scan_part(half..n, &ctx));
                let first = self.scan_part(0..half, &ctx);
                // A panic in the other half is this scan's panic.
                let second = second
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (first, second)
            });
            first.merge(second, query.limit + 1);
            first
        } else {
            self.scan_part(0..n, &ctx)
        };
        if let Some(ids) = selected {
            ids.append(&mut part.selected);
        }
        let Part {
            provider_counts,
            tag_counts,
            role_counts,
            subscribers,
            total,
            heap,
            ..
        } = part;
        let mut rows = heap.into_sorted_vec();
        let more = rows.len() > query.limit;
        rows.truncate(query.limit);
        let next = if more {
            rows.last().map(|r| UserCursor {
                key: r.key.to_cursor(),
                user: r.id.to_owned(),
            })
        } else {
            None
        };
        let mut provider: Vec<(String, u64)> = self
            .providers
            .iter()
            .zip(provider_counts)
            .map(|(p, n)| (p.to_string(), n))
            .collect();
        provider.sort();
        let counts = |of, counts: &[u64]| {
            let mut named: Vec<(String, u64)> = (0..labels as u32)
                .filter(|&n| canonical[n as usize] == n && self.audience.is_of(n, of))
                .filter_map(|n| {
                    let name = self.audience.label_name(n)?;
                    Some((name.to_owned(), counts[n as usize]))
                })
                .collect();
            named.sort();
            named
        };
        UsersPage {
            items: rows.iter().map(|r| self.figures_of(r.index)).collect(),
            total,
            next,
            facets: Facets {
                provider,
                tag: counts(botwatch_event::LabelOf::Tag, &tag_counts),
                role: counts(botwatch_event::LabelOf::Role, &role_counts),
                subscriber: subscribers,
            },
        }
    }

    /// The users of `range` that a scan lets through: counts, facets, and the best rows
    /// of the page (or their ids when selecting).
    fn scan_part<'a>(&'a self, range: std::ops::Range<usize>, ctx: &Scan<'_>) -> Part<'a> {
        let (f, query) = (&ctx.query.filter, ctx.query);
        let labels = ctx.alive.len();
        let mut part = Part {
            provider_counts: vec![0u64; self.providers.len()],
            tag_counts: vec![0u64; labels],
            role_counts: vec![0u64; labels],
            subscribers: 0,
            total: 0,
            heap: BinaryHeap::with_capacity(query.limit + 2),
            selected: Vec::new(),
        };
        // Labels sharing a name count once per user (`counted_for`: the last user
        // counted under each).
        let mut counted_for = vec![u32::MAX; labels];
        let keep = query.limit + 1;
        let (alive, canonical) = (ctx.alive, ctx.canonical);
        for (i, u) in self.users[range.clone()].iter().enumerate() {
            let i = (range.start + i) as u32;
            if ctx.with_messages_only && u.last_ms == NEVER {
                continue;
            }
            if ctx.found.is_some_and(|bits| !has(bits, i)) {
                continue;
            }
            let known_provider = u.provider_ms != NEVER;
            // What operators set, read once (most users have nothing).
            let hot = self.audience.hot(i);
            let subscriber = hot.and_then(|h| h.subscriber()).unwrap_or(true);
            let mode = self.mode_of(i);
            let role = hot.and_then(|h| h.role(alive));
            let each_tag = |f: &mut dyn FnMut(u32)| {
                if let Some(h) = hot {
                    self.audience.each_tag(i, h, alive, f);
                }
            };
            let tagged = |wanted: &[bool]| {
                let mut any = false;
                each_tag(&mut |t| any |= wanted[t as usize]);
                any
            };
            let pass = [
                f.providers.is_empty()
                    || (known_provider && ctx.wanted_providers[u.provider as usize]),
                f.tags.is_empty() || tagged(ctx.wanted_tags),
                f.roles.is_empty() || role.is_some_and(|r| ctx.wanted_roles[r as usize]),
                f.subscriber.is_none_or(|s| s == subscriber),
                f.modes.is_empty() || f.modes.contains(&mode),
            ];
            let failed = pass.iter().filter(|p| !**p).count();
            if failed > usize::from(ctx.facets) {
                continue;
            }
            // A user failing only one group counts in that group's facet.
            let counts_in = |group: usize| failed == 0 || !pass[group];
            if counts_in(0) && known_provider {
                part.provider_counts[u.provider as usize] += 1;
            }
            if counts_in(1) {
                each_tag(&mut |t| {
                    let c = canonical[t as usize] as usize;
                    if let Some(last) = counted_for.get_mut(c)
                        && *last != i
                    {
                        *last = i;
                        part.tag_counts[c] += 1;
                    }
                });
            }
            if counts_in(2)
                && let Some(c) = role.and_then(|r| canonical.get(r as usize))
                && let Some(count) = part.role_counts.get_mut(*c as usize)
            {
                *count += 1;
            }
            if counts_in(3) && subscriber {
                part.subscribers += 1;
            }
            if failed > 0 {
                continue;
            }
            part.total += 1;
            if ctx.selecting {
                part.selected.push(self.strings.get_short(&u.id).to_owned());
                continue;
            }
            let row = Row {
                key: self.sort_key(i, query.sort),
                id: self.strings.get_short(&u.id),
                index: i,
                descending: query.descending,
            };
            if let Some((key, id)) = ctx.after
                && row.page_cmp(key, id) != Ordering::Greater
            {
                continue;
            }
            part.offer(row, keep);
        }
        part
    }

    /// Users with messages, the latest message first (ties by id, descending), in
    /// `mode` only when one is given; `after` continues a page.
    pub fn dialogs(
        &self,
        after: Option<&DialogCursor>,
        limit: usize,
        mode: Option<Mode>,
    ) -> (Vec<UserFigures>, Option<DialogCursor>) {
        let page = self.scan(
            &UsersQuery {
                filter: UserFilter {
                    modes: mode.into_iter().collect(),
                    ..UserFilter::default()
                },
                sort: UserSort::Last,
                descending: true,
                limit,
                after: after.map(|c| UserCursor {
                    key: CursorKey::Number(c.last_ms),
                    user: c.user.clone(),
                }),
            },
            true,
            None,
        );
        let next = page.next.and_then(|c| match c.key {
            CursorKey::Number(last_ms) => Some(DialogCursor {
                last_ms,
                user: c.user,
            }),
            CursorKey::Text(_) => None,
        });
        (page.items, next)
    }
}

#[cfg(test)]
mod tests {
    use botwatch_event::{
        AudienceChange, Direction, Event, EventKind, Label, LabelOf, UserEdit, UserInfo,
    };
    use chrono::TimeZone;

    use super::*;
    use crate::bot::BotSettings;

    /// 500 users on three providers, tagged and given roles, some not subscribers, in
    /// Manual: the scan in two halves gives what the scan in one does.
    #[test]
    fn a_scan_split_in_two_finds_what_one_finds() {
        let mut f = BotFigures::new(BotSettings::default());
        let at = |ms: i64| chrono::Utc.timestamp_millis_opt(ms).single().expect("time");
        for (n, of, name) in [
            (0, LabelOf::Tag, "VIP"),
            (1, LabelOf::Tag, "New"),
            (2, LabelOf::Role, "admin"),
        ] {
            let mut e = Event::about_dialog(format!("l{n}"), EventKind::Audience, "b", "x", "");
            e.audience = Some(AudienceChange::Label(Label {
                of,
                key: format!("k{n}"),
                name: Some(name.to_owned()),
            }));
            f.apply(&e);
        }
        for u in 0..500i64 {
            let mut e = Event::about_dialog(
                format!("m{u}"),
                EventKind::Message,
                "b",
                ["telegram", "viber", "webchat"][(u % 3) as usize],
                &format!("u{u}"),
            );
            e.direction = Some(Direction::In);
            e.user = UserInfo {
                id: format!("u{u}"),
                name: Some(format!("User {}", (u * 7919) % 500)),
                ..UserInfo::default()
            };
            e.ts = at(1_000_000 + (u * 104_729) % 50_000);
            f.apply(&e);
            let mut edit = UserEdit::default();
            if u % 2 == 0 {
                edit.add_tags.push("k0".to_owned());
            }
            if u % 5 == 0 {
                edit.add_tags.push("k1".to_owned());
            }
            if u % 7 == 0 {
                edit.role = Some("k2".to_owned());
            }
            if u % 11 == 0 {
                edit.subscriber = Some(false);
            }
            let mut e = Event::about_dialog(
                format!("a{u}"),
                EventKind::Audience,
                "b",
                "x",
                &format!("u{u}"),
            );
            e.audience = Some(AudienceChange::Edit(edit));
            e.ts = at(2_000_000 + u);
            f.apply(&e);
        }
        let filters = [
            UserFilter::default(),
            UserFilter {
                tags: vec!["VIP".into(), "New".into()],
                providers: vec!["viber".into()],
                ..UserFilter::default()
            },
            UserFilter {
                roles: vec!["admin".into()],
                subscriber: Some(true),
                search: Some("user 1".into()),
                ..UserFilter::default()
            },
        ];
        for filter in filters {
            for sort in [UserSort::Last, UserSort::Name, UserSort::Messages] {
                let mut query = UsersQuery {
                    filter: filter.clone(),
                    sort,
                    descending: sort != UserSort::Name,
                    limit: 7,
                    after: None,
                };
                // Three pages each way, following the cursor.
                for _ in 0..3 {
                    let whole = f.scan_split(&query, false, None, usize::MAX);
                    let split = f.scan_split(&query, false, None, 1);
                    assert_eq!(split, whole, "{query:?}");
                    query.after = whole.next.clone();
                }
                let (mut one, mut two) = (Vec::new(), Vec::new());
                f.scan_split(&query, false, Some(&mut one), usize::MAX);
                f.scan_split(&query, false, Some(&mut two), 1);
                assert_eq!(one, two, "the same selection, in the same order");
            }
        }
    }
}
