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
        mut selected: Option<&mut Vec<String>>,
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
        let mut counted_for = vec![u32::MAX; labels];
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
        let after = query.after.as_ref().map(|c| {
            let key = match &c.key {
                CursorKey::Number(n) => Key::Number(*n),
                CursorKey::Text(t) => Key::Text(t),
            };
            (key, c.user.as_str())
        });

        let mut provider_counts = vec![0u64; self.providers.len()];
        let mut tag_counts = vec![0u64; labels];
        let mut role_counts = vec![0u64; labels];
        let mut subscribers = 0u64;
        let mut total = 0u64;
        let keep = query.limit + 1;
        let mut heap: BinaryHeap<Row<'_>> = BinaryHeap::with_capacity(keep + 1);
        for (i, u) in self.users.iter().enumerate() {
            let i = i as u32;
            if with_messages_only && u.last_ms == NEVER {
                continue;
            }
            if found.as_ref().is_some_and(|bits| !has(bits, i)) {
                continue;
            }
            let known_provider = u.provider_ms != NEVER;
            // What operators set, read once (most users have nothing).
            let hot = self.audience.hot(i);
            let subscriber = hot.and_then(|h| h.subscriber()).unwrap_or(true);
            let mode = self.mode_of(i);
            let role = hot.and_then(|h| h.role(&alive));
            let each_tag = |f: &mut dyn FnMut(u32)| {
                if let Some(h) = hot {
                    self.audience.each_tag(i, h, &alive, f);
                }
            };
            let tagged = |wanted: &[bool]| {
                let mut any = false;
                each_tag(&mut |t| any |= wanted[t as usize]);
                any
            };
            let pass = [
                f.providers.is_empty() || (known_provider && wanted_providers[u.provider as usize]),
                f.tags.is_empty() || tagged(&wanted_tags),
                f.roles.is_empty() || role.is_some_and(|r| wanted_roles[r as usize]),
                f.subscriber.is_none_or(|s| s == subscriber),
                f.modes.is_empty() || f.modes.contains(&mode),
            ];
            let failed = pass.iter().filter(|p| !**p).count();
            if failed > usize::from(facets) {
                continue;
            }
            // A user failing only one group counts in that group's facet.
            let counts_in = |group: usize| failed == 0 || !pass[group];
            if counts_in(0) && known_provider {
                provider_counts[u.provider as usize] += 1;
            }
            if counts_in(1) {
                each_tag(&mut |t| {
                    let c = canonical[t as usize] as usize;
                    if let Some(last) = counted_for.get_mut(c)
                        && *last != i
                    {
                        *last = i;
                        tag_counts[c] += 1;
                    }
                });
            }
            if counts_in(2)
                && let Some(c) = role.and_then(|r| canonical.get(r as usize))
                && let Some(count) = role_counts.get_mut(*c as usize)
            {
                *count += 1;
            }
            if counts_in(3) && subscriber {
                subscribers += 1;
            }
            if failed > 0 {
                continue;
            }
            total += 1;
            if let Some(ids) = selected.as_deref_mut() {
                ids.push(self.strings.get_short(&u.id).to_owned());
                continue;
            }
            let row = Row {
                key: self.sort_key(i, query.sort),
                id: self.strings.get_short(&u.id),
                index: i,
                descending: query.descending,
            };
            if let Some((key, id)) = &after
                && row.page_cmp(key, id) != Ordering::Greater
            {
                continue;
            }
            if heap.len() == keep {
                if heap.peek().is_some_and(|last| row >= *last) {
                    continue;
                }
                heap.pop();
            }
            heap.push(row);
        }

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
