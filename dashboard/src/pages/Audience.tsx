// Audience: the bot's users with their role, tags, Subscriber flag, mode and
// information fields; filters with live counts (facets), a search, sorting and paging
// by the server; a user's edit form; bulk changes; the bot's roles and tags; CSV.
// Read again after every change and (at most once a second) when the figures move.

import { useEffect, useRef, useState } from 'preact/hooks';
import { HttpError, get, request } from '../api/http';
import type { BulkAnswer, FacetsItem, LabelItem, ProfileAnswer, UserItem, UsersAnswer } from '../api/types';
import {
  type AudienceFilters,
  type BulkAction,
  type EditForm,
  type FilterGroup,
  NO_FILTERS,
  OWN_FIELDS,
  type SortOrder,
  type UserSort,
  bulkBody,
  csvUrl,
  formOf,
  formProblem,
  isFiltered,
  newTags,
  patchOf,
  toggleValue,
  usersUrl,
} from '../audience';
import { Avatar, ErrorLine, ProviderIcon, providerName } from '../components/bits';
import { displayName, formatWhen, plural } from '../format';
import { canEdit, useLatestRequest, useLiveRefresh, useZone } from '../state';
import { overviewReducer } from './Overview';

/** Rows read at once (and the least a refresh reads again). */
const PAGE = 50;
/** The most rows one request may ask for. */
const MAX_LIMIT = 200;
const SEARCH_DELAY_MS = 250;

const SORTS: Array<[UserSort, string]> = [
  ['last', 'Last activity'],
  ['messages', 'Messages'],
  ['sessions', 'Sessions'],
  ['name', 'Name'],
];

const FIELD_LABELS: Record<string, string> = { phone: 'Phone', email: 'E-mail' };
const fieldLabel = (k: string) => FIELD_LABELS[k] ?? k;

const api = (bot: string) => `/api/v1/bots/${encodeURIComponent(bot)}`;

/** "Not saved: the bot has no role …": the server's words, after what failed. */
function failure(what: string, e: unknown): Error {
  const text = e instanceof Error ? e.message : String(e);
  return new Error(`${what}: ${text}`);
}

export function AudiencePage({ bot }: { bot: string }) {
  const tz = useZone(bot);
  const editable = canEdit();
  const [typed, setTyped] = useState('');
  const [filters, setFilters] = useState<AudienceFilters>(NO_FILTERS);
  const [sort, setSort] = useState<UserSort>('last');
  const [order, setOrder] = useState<SortOrder>('desc');
  const [data, setData] = useState<UsersAnswer | null>(null);
  const [loadingMore, setLoadingMore] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [roles, setRoles] = useState<LabelItem[]>([]);
  const [tags, setTags] = useState<LabelItem[]>([]);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [allMatching, setAllMatching] = useState(false);
  const [open, setOpen] = useState<string | null>(null);

  // The search waits for a pause in typing.
  useEffect(() => {
    if (typed === filters.search) return;
    const timer = setTimeout(() => setFilters((f) => ({ ...f, search: typed })), SEARCH_DELAY_MS);
    return () => clearTimeout(timer);
  }, [typed]);

  // Only the answer to the latest request counts (one asked for under other filters
  // must not land under these).
  const latest = useLatestRequest();
  /** Reads the first `count` rows (page after page) with the facets. */
  const read = async (count: number): Promise<UsersAnswer> => {
    const page = (limit: number, cursor: string | null) => get<UsersAnswer>(usersUrl(bot, filters, { sort, order, limit: Math.min(MAX_LIMIT, limit), cursor }));
    // The total and the counts are those of the first page's moment.
    const first = await page(count, null);
    const items: UserItem[] = [...first.items];
    let cursor = first.next ?? null;
    while (cursor && items.length < count) {
      const a = await page(count - items.length, cursor);
      items.push(...a.items.filter((u) => !items.some((x) => x.id === u.id)));
      cursor = a.next ?? null;
    }
    return { ...first, items, next: cursor };
  };
  const reload = (count: number) => {
    const current = latest();
    read(Math.max(PAGE, count))
      .then((a) => {
        if (!current()) return;
        setData(a);
        setError(null);
      })
      .catch((e) => current() && setError(e instanceof HttpError && e.status === 404 ? null : e));
  };
  const loadLabels = () => {
    Promise.all([get<LabelItem[]>(`${api(bot)}/roles`), get<LabelItem[]>(`${api(bot)}/tags`)])
      .then(([r, t]) => {
        setRoles(r);
        setTags(t);
      })
      .catch((e) => !(e instanceof HttpError && e.status === 404) && setError(e));
  };
  /** Reads the rows shown, the counts and the roles and tags again (after a change). */
  const refresh = () => {
    reload(data?.items.length ?? PAGE);
    loadLabels();
  };

  useEffect(() => {
    reload(PAGE);
    setSelected(new Set());
    setAllMatching(false);
  }, [bot, filters, sort, order]);
  useEffect(loadLabels, [bot]);
  // The figures moved (a message, a new user, an edit elsewhere): the counts too.
  useLiveRefresh(`bot/${bot}/overview`, overviewReducer, refresh, 1000);

  const more = () => {
    if (!data?.next) return;
    const current = latest();
    setLoadingMore(true);
    get<UsersAnswer>(usersUrl(bot, filters, { sort, order, limit: PAGE, cursor: data.next }))
      .then((a) => {
        if (!current()) return;
        setData((d) => (d ? { ...a, items: [...d.items, ...a.items.filter((u) => !d.items.some((x) => x.id === u.id))] } : a));
      })
      .catch((e) => current() && setError(e))
      .finally(() => setLoadingMore(false));
  };

  const toggle = (group: FilterGroup, value: string) => setFilters((f) => toggleValue(f, group, value));
  const clearFilters = () => {
    setTyped('');
    setFilters(NO_FILTERS);
  };

  // After a role or tag was renamed or deleted, the filters name what exists.
  const labelChanged = (group: 'role' | 'tag', from: string, to: string | null) => {
    setFilters((f) => (f[group].includes(from) ? { ...f, [group]: to === null ? f[group].filter((v) => v !== from) : f[group].map((v) => (v === from ? to : v)) } : f));
    refresh();
  };

  // The roles and tags are read again with each form opened: made or deleted
  // elsewhere meanwhile, the form offers what exists.
  const openEditor = (id: string) => {
    setOpen(id);
    loadLabels();
  };
  const closeEditor = () => {
    const id = open;
    setOpen(null);
    if (id) {
      // Back to the row the form was opened from.
      const row = [...document.querySelectorAll<HTMLElement>('tr[data-user]')].find((r) => r.dataset.user === id);
      row?.querySelector<HTMLElement>('button.name')?.focus();
    }
  };

  const items = data?.items ?? [];
  const facets: FacetsItem = data?.facets ?? { provider: {}, tag: {}, role: {}, subscriber: 0 };
  // Columns for the information fields the rows shown have (phone and e-mail first).
  const fieldKeys = [...new Set(items.flatMap((u) => Object.keys(u.fields ?? {})))].sort((a, b) => {
    const rank = (k: string) => {
      const i = (OWN_FIELDS as readonly string[]).indexOf(k);
      return i < 0 ? OWN_FIELDS.length : i;
    };
    return rank(a) - rank(b) || a.localeCompare(b);
  });
  const allShownSelected = items.length > 0 && items.every((u) => selected.has(u.id));

  return (
    <div class="audience">
      <aside class="filters" aria-label="Filters">
        <h2>Filters</h2>
        <FacetGroup legend="Provider" group="provider" counts={facets.provider} selected={filters.provider} label={providerName} onToggle={toggle} />
        <FacetGroup legend="Tag" group="tag" counts={facets.tag} selected={filters.tag} onToggle={toggle} />
        <FacetGroup legend="Role" group="role" counts={facets.role} selected={filters.role} onToggle={toggle} />
        <fieldset class="facet" data-facet="subscriber">
          <legend>Subscribers</legend>
          <label data-value="true">
            <input type="checkbox" checked={filters.subscriber} onChange={(e) => setFilters((f) => ({ ...f, subscriber: e.currentTarget.checked }))} />
            <span class="value">Subscribers only</span>
            <span class="count">{facets.subscriber.toLocaleString('en')}</span>
          </label>
        </fieldset>
        <fieldset class="facet" data-facet="mode">
          <legend>Mode</legend>
          {(['auto', 'manual'] as const).map((m) => (
            <label data-value={m}>
              <input type="checkbox" checked={filters.mode.includes(m)} onChange={() => toggle('mode', m)} />
              <span class="value">{m === 'auto' ? 'Auto: the bot answers' : 'Manual: an operator answers'}</span>
            </label>
          ))}
        </fieldset>
        {isFiltered(filters) && (
          <button type="button" class="link" onClick={clearFilters}>
            Clear all filters
          </button>
        )}
        {editable && <ManageLabels bot={bot} roles={roles} tags={tags} onChanged={labelChanged} onCreated={refresh} />}
      </aside>

      <section class="people" aria-labelledby="audience-h">
        <h1 id="audience-h">
          Audience{' '}
          <span class="muted total" data-total={data?.total ?? ''}>
            {data ? plural(data.total, 'user') : ''}
          </span>
        </h1>
        <div class="toolbar">
          <label class="search">
            <span class="sr-only">Search by name</span>
            <input type="search" placeholder="Search by name…" value={typed} onInput={(e) => setTyped(e.currentTarget.value)} />
          </label>
          <label>
            Sort by{' '}
            <select
              aria-label="Sort by"
              value={sort}
              onChange={(e) => {
                const s = e.currentTarget.value as UserSort;
                setSort(s);
                setOrder(s === 'name' ? 'asc' : 'desc');
              }}
            >
              {SORTS.map(([value, label]) => (
                <option value={value}>{label}</option>
              ))}
            </select>
          </label>
          <select aria-label="Order" value={order} onChange={(e) => setOrder(e.currentTarget.value as SortOrder)}>
            <option value="desc">{sort === 'name' ? 'Z to A' : sort === 'last' ? 'Latest first' : 'Most first'}</option>
            <option value="asc">{sort === 'name' ? 'A to Z' : sort === 'last' ? 'Oldest first' : 'Fewest first'}</option>
          </select>
          <span class="spacer" />
          <a class="button" href={csvUrl(bot, filters)} download>
            Export CSV
          </a>
        </div>
        {editable && (
          <BulkBar
            bot={bot}
            filters={filters}
            total={data?.total ?? 0}
            selected={selected}
            allMatching={allMatching}
            setAllMatching={setAllMatching}
            roles={roles}
            tags={tags}
            onDone={() => {
              setSelected(new Set());
              setAllMatching(false);
              refresh();
            }}
          />
        )}
        <ErrorLine error={error} />
        <div class="table-wrap">
          <table class="audience-table">
            <thead>
              <tr>
                {editable && (
                  <th scope="col" class="pick">
                    <input
                      type="checkbox"
                      aria-label="Select all users shown"
                      checked={allMatching || allShownSelected}
                      disabled={allMatching || items.length === 0}
                      onChange={(e) => setSelected(e.currentTarget.checked ? new Set(items.map((u) => u.id)) : new Set())}
                    />
                  </th>
                )}
                <th scope="col">Name</th>
                <th scope="col">Role</th>
                <th scope="col">Provider</th>
                <th scope="col">Gender</th>
                <th scope="col">Tags</th>
                <th scope="col">Subscriber</th>
                <th scope="col">Mode</th>
                {fieldKeys.map((k) => (
                  <th scope="col" data-field={k}>
                    {fieldLabel(k)}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {items.map((u) => (
                <tr key={u.id} data-user={u.id} class={u.id === open ? 'open' : undefined} onClick={() => openEditor(u.id)}>
                  {editable && (
                    <td class="pick" onClick={(e) => e.stopPropagation()}>
                      <input
                        type="checkbox"
                        aria-label={`Select ${displayName(u)}`}
                        checked={allMatching || selected.has(u.id)}
                        disabled={allMatching}
                        onChange={(e) => {
                          const on = e.currentTarget.checked;
                          setSelected((s) => {
                            const n = new Set(s);
                            if (on) n.add(u.id);
                            else n.delete(u.id);
                            return n;
                          });
                        }}
                      />
                    </td>
                  )}
                  <td class="who">
                    <span class="person">
                      <Avatar user={u} size={28} />
                      <button
                        type="button"
                        class="link name"
                        onClick={(e) => {
                          e.stopPropagation();
                          openEditor(u.id);
                        }}
                      >
                        {displayName(u)}
                      </button>
                    </span>
                  </td>
                  <td class="role">{u.role ?? ''}</td>
                  <td class="provider-cell" data-provider={u.provider ?? ''}>
                    {u.provider && (
                      <>
                        <span aria-hidden="true">
                          <ProviderIcon provider={u.provider} />
                        </span>{' '}
                        {providerName(u.provider)}
                      </>
                    )}
                  </td>
                  <td class="gender">{u.gender ?? ''}</td>
                  <td class="tags">
                    {u.tags.length > 0 && (
                      <ul class="chips">
                        {u.tags.map((t) => (
                          <li class="chip">{t}</li>
                        ))}
                      </ul>
                    )}
                  </td>
                  <td class="subscriber" data-subscriber={String(u.subscriber)}>
                    {u.subscriber ? 'Yes' : 'No'}
                  </td>
                  <td class="mode" data-mode={u.mode}>
                    {u.mode === 'manual' ? 'Manual' : 'Auto'}
                  </td>
                  {fieldKeys.map((k) => (
                    <td data-field={k}>{u.fields?.[k] ?? ''}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {data && items.length === 0 && <p class="muted">{isFiltered(filters) ? 'No user matches these filters.' : 'No users yet.'}</p>}
        <div class="pager">
          <span>{data && items.length > 0 ? `Showing ${items.length.toLocaleString('en')} of ${data.total.toLocaleString('en')}` : ''}</span>
          {data?.next && (
            <button type="button" disabled={loadingMore} onClick={more}>
              {loadingMore ? 'Loading…' : 'More'}
            </button>
          )}
        </div>
      </section>

      {open !== null && (
        <UserEditor key={open} bot={bot} id={open} tz={tz} editable={editable} roles={roles} tags={tags} onClose={closeEditor} onSaved={refresh} />
      )}
    </div>
  );
}

/** One filter group: its values with their counts; several values OR. Values chosen
 *  stay listed even when the counts no longer hold them. */
function FacetGroup({
  legend,
  group,
  counts,
  selected,
  label = (v) => v,
  onToggle,
}: {
  legend: string;
  group: FilterGroup;
  counts: Record<string, number>;
  selected: string[];
  label?: (value: string) => string;
  onToggle: (group: FilterGroup, value: string) => void;
}) {
  const values = [...Object.keys(counts), ...selected.filter((v) => !(v in counts))];
  return (
    <fieldset class="facet" data-facet={group}>
      <legend>{legend}</legend>
      {values.length === 0 && <p class="muted none">None yet</p>}
      {values.map((v) => (
        <label data-value={v}>
          <input type="checkbox" checked={selected.includes(v)} onChange={() => onToggle(group, v)} />
          <span class="value">{label(v)}</span>
          <span class="count">{(counts[v] ?? 0).toLocaleString('en')}</span>
        </label>
      ))}
    </fieldset>
  );
}

// ---------------------------------------------------------------------------------------

type ActionName = '' | 'role' | 'subscriber-on' | 'subscriber-off' | 'auto-on' | 'auto-off' | 'add-tag' | 'remove-tag';

const ACTIONS: Array<[ActionName, string]> = [
  ['role', 'Set the role'],
  ['subscriber-on', 'Make subscribers'],
  ['subscriber-off', 'Make non-subscribers'],
  ['auto-on', 'Auto mode on (the bot answers)'],
  ['auto-off', 'Auto mode off (Manual)'],
  ['add-tag', 'Add a tag'],
  ['remove-tag', 'Remove a tag'],
];

function actionOf(name: ActionName, value: string): BulkAction | null {
  switch (name) {
    case 'role':
      return { kind: 'role', role: value };
    case 'subscriber-on':
    case 'subscriber-off':
      return { kind: 'subscriber', on: name === 'subscriber-on' };
    case 'auto-on':
    case 'auto-off':
      return { kind: 'auto_mode', on: name === 'auto-on' };
    case 'add-tag':
    case 'remove-tag':
      return value ? { kind: name === 'add-tag' ? 'add_tag' : 'remove_tag', tag: value } : null;
    case '':
      return null;
  }
}

/** Changes for many users: those ticked, or every user the filters let through. */
function BulkBar(props: {
  bot: string;
  filters: AudienceFilters;
  total: number;
  selected: Set<string>;
  allMatching: boolean;
  setAllMatching: (on: boolean) => void;
  roles: LabelItem[];
  tags: LabelItem[];
  onDone: () => void;
}) {
  const { bot, filters, total, selected, allMatching, roles, tags } = props;
  const [action, setAction] = useState<ActionName>('');
  const [value, setValue] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [message, setMessage] = useState<string | null>(null);
  const count = allMatching ? total : selected.size;
  const chosen = actionOf(action, value);
  const needs = action === 'role' ? 'role' : action === 'add-tag' || action === 'remove-tag' ? 'tag' : null;

  const apply = async () => {
    if (!chosen || count === 0) return;
    setBusy(true);
    setError(null);
    setMessage(null);
    try {
      const body = bulkBody(allMatching ? { filter: filters } : { ids: [...selected] }, chosen);
      const answer = await request<BulkAnswer>('POST', `${api(bot)}/users/bulk`, body);
      setMessage(`Updated ${plural(answer.updated, 'user')}.`);
      props.onDone();
    } catch (e) {
      setError(failure('Not changed', e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="bulk" role="group" aria-label="Change several users">
      <label>
        <input type="checkbox" checked={allMatching} onChange={(e) => props.setAllMatching(e.currentTarget.checked)} /> Select all {total.toLocaleString('en')} matching
      </label>
      <span class="selected-count" data-count={count}>
        {plural(count, 'user')} selected
      </span>
      <select
        aria-label="Change"
        value={action}
        onChange={(e) => {
          setAction(e.currentTarget.value as ActionName);
          setValue('');
        }}
      >
        <option value="">Change…</option>
        {ACTIONS.map(([v, label]) => (
          <option value={v}>{label}</option>
        ))}
      </select>
      {needs && (
        <select aria-label={needs === 'role' ? 'Role to set' : 'Tag'} value={value} onChange={(e) => setValue(e.currentTarget.value)}>
          {needs === 'role' ? <option value="">No role</option> : <option value="">Choose a tag…</option>}
          {(needs === 'role' ? roles : tags).map((l) => (
            <option value={l.name}>{l.name}</option>
          ))}
        </select>
      )}
      <button type="button" disabled={busy || !chosen || count === 0} onClick={() => void apply()}>
        {busy ? 'Applying…' : 'Apply'}
      </button>
      <span role="status" class="ok">
        {message}
      </span>
      <ErrorLine error={error} />
    </div>
  );
}

// ---------------------------------------------------------------------------------------

/** The bot's roles and tags: create, rename, delete. */
function ManageLabels({
  bot,
  roles,
  tags,
  onChanged,
  onCreated,
}: {
  bot: string;
  roles: LabelItem[];
  tags: LabelItem[];
  onChanged: (group: 'role' | 'tag', from: string, to: string | null) => void;
  onCreated: () => void;
}) {
  return (
    <details class="manage">
      <summary>Manage roles and tags</summary>
      <LabelList bot={bot} of="role" items={roles} onChanged={onChanged} onCreated={onCreated} />
      <LabelList bot={bot} of="tag" items={tags} onChanged={onChanged} onCreated={onCreated} />
    </details>
  );
}

function LabelList({
  bot,
  of,
  items,
  onChanged,
  onCreated,
}: {
  bot: string;
  of: 'role' | 'tag';
  items: LabelItem[];
  onChanged: (group: 'role' | 'tag', from: string, to: string | null) => void;
  onCreated: () => void;
}) {
  const [name, setName] = useState('');
  const [editing, setEditing] = useState<{ from: string; to: string } | null>(null);
  const [deleting, setDeleting] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const path = `${api(bot)}/${of}s`;
  const title = of === 'role' ? 'Roles' : 'Tags';

  const run = async (what: string, f: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await f();
    } catch (e) {
      setError(failure(what, e));
    } finally {
      setBusy(false);
    }
  };
  const create = () =>
    run(`The ${of} was not created`, async () => {
      await request('POST', path, { name: name.trim() });
      setName('');
      onCreated();
    });
  const rename = (from: string, to: string) =>
    run(`The ${of} was not renamed`, async () => {
      await request('PATCH', `${path}/${encodeURIComponent(from)}`, { name: to.trim() });
      setEditing(null);
      onChanged(of, from, to.trim());
    });
  const remove = (n: string) =>
    run(`The ${of} was not deleted`, async () => {
      await request('DELETE', `${path}/${encodeURIComponent(n)}`);
      setDeleting(null);
      onChanged(of, n, null);
    });

  return (
    <section class="labels" aria-label={title} data-labels={of}>
      <h3>{title}</h3>
      <ul>
        {items.map((l) => (
          <li data-label={l.name}>
            {editing?.from === l.name ? (
              <form
                class="inline"
                onSubmit={(e) => {
                  e.preventDefault();
                  void rename(l.name, editing.to);
                }}
              >
                <input aria-label={`New name for ${of} ${l.name}`} value={editing.to} required onInput={(e) => setEditing({ from: l.name, to: e.currentTarget.value })} />
                <button type="submit" disabled={busy || !editing.to.trim()}>
                  Save
                </button>
                <button type="button" class="link" onClick={() => setEditing(null)}>
                  Cancel
                </button>
              </form>
            ) : deleting === l.name ? (
              <span class="inline">
                Delete “{l.name}”{l.users ? ` from ${plural(l.users, 'user')}` : ''}?{' '}
                <button type="button" class="danger" disabled={busy} onClick={() => void remove(l.name)}>
                  Delete
                </button>
                <button type="button" class="link" onClick={() => setDeleting(null)}>
                  Keep
                </button>
              </span>
            ) : (
              <>
                <span class="name">{l.name}</span> <span class="muted count">{l.users.toLocaleString('en')}</span>
                <span class="spacer" />
                <button type="button" class="link" aria-label={`Rename ${of} ${l.name}`} onClick={() => setEditing({ from: l.name, to: l.name })}>
                  Rename
                </button>
                <button type="button" class="link" aria-label={`Delete ${of} ${l.name}`} onClick={() => setDeleting(l.name)}>
                  Delete
                </button>
              </>
            )}
          </li>
        ))}
      </ul>
      {items.length === 0 && <p class="muted none">No {of}s yet.</p>}
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          if (name.trim()) void create();
        }}
      >
        <input aria-label={`New ${of}`} placeholder={`New ${of}`} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        <button type="submit" disabled={busy || !name.trim()}>
          Create
        </button>
      </form>
      <ErrorLine error={error} />
    </section>
  );
}

// ---------------------------------------------------------------------------------------

/** One user's form, in a panel beside the table: what channels said (read only) and
 *  what operators keep (name over the channel's, role, tags, flags, fields). Saved in
 *  one PATCH of what changed. */
function UserEditor({
  bot,
  id,
  tz,
  editable,
  roles,
  tags,
  onClose,
  onSaved,
}: {
  bot: string;
  id: string;
  tz: string;
  editable: boolean;
  roles: LabelItem[];
  tags: LabelItem[];
  onClose: () => void;
  onSaved: () => void;
}) {
  const [profile, setProfile] = useState<ProfileAnswer | null>(null);
  const [form, setForm] = useState<EditForm | null>(null);
  const [tagText, setTagText] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [status, setStatus] = useState<string | null>(null);
  const heading = useRef<HTMLHeadingElement>(null);
  const panel = useRef<HTMLDivElement>(null);
  // A field added: its name is typed first.
  const focusNewField = useRef(false);
  useEffect(() => {
    if (!focusNewField.current) return;
    focusNewField.current = false;
    panel.current?.querySelector<HTMLElement>('.custom-fields li:last-child input')?.focus();
  }, [form?.custom.length]);
  const nextField = useRef(1000);
  const url = `${api(bot)}/users/${encodeURIComponent(id)}`;

  useEffect(() => {
    get<ProfileAnswer>(url)
      .then((p) => {
        setProfile(p);
        setForm(formOf(p));
      })
      .catch(setError);
  }, [url]);
  useEffect(() => heading.current?.focus(), []);
  // Escape closes the form wherever the focus is (a button disabled while saving
  // left it on the page).
  const closing = useRef({ busy, onClose });
  closing.current = { busy, onClose };
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== 'Escape' || e.defaultPrevented || closing.current.busy) return;
      e.preventDefault();
      closing.current.onClose();
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, []);

  const set = (patch: Partial<EditForm>) => {
    setStatus(null);
    setForm((f) => (f ? { ...f, ...patch } : f));
  };
  const knownTags = tags.map((t) => t.name);
  const addTag = () => {
    const t = tagText.trim();
    if (!form || !t) return;
    if (!form.tags.includes(t)) set({ tags: [...form.tags, t] });
    setTagText('');
  };
  const changed = profile && form ? Object.keys(patchOf(profile, form)).length > 0 : false;

  const save = async () => {
    if (!profile || !form) return;
    const problem = formProblem(form);
    if (problem) {
      setError(new Error(problem));
      return;
    }
    const patch = patchOf(profile, form);
    if (Object.keys(patch).length === 0) {
      setStatus('Nothing changed.');
      return;
    }
    setBusy(true);
    setError(null);
    setStatus(null);
    try {
      // A tag typed that the bot does not have yet: created first.
      if (patch.tags) {
        for (const t of newTags(form, knownTags)) {
          try {
            await request('POST', `${api(bot)}/tags`, { name: t });
          } catch (e) {
            if (!(e instanceof HttpError && e.status === 409)) throw failure(`The tag “${t}” was not created`, e);
          }
        }
      }
      const p = await request<ProfileAnswer>('PATCH', url, patch);
      setProfile(p);
      setForm(formOf(p));
      setStatus('Saved.');
      onSaved();
    } catch (e) {
      setError(e instanceof Error && e.message.startsWith('The tag') ? e : failure('Not saved', e));
    } finally {
      setBusy(false);
    }
  };

  const name = profile ? displayName(profile) : id;
  const roleNames = roles.map((r) => r.name);
  return (
    <div
      ref={panel}
      class="editor"
      role="dialog"
      aria-modal="false"
      aria-labelledby="editor-h"
    >
      <header>
        {profile && <Avatar user={profile} size={48} />}
        <h2 id="editor-h" ref={heading} tabIndex={-1}>
          {name}
        </h2>
        <button type="button" class="link close" aria-label="Close" onClick={onClose}>
          ✕
        </button>
      </header>
      {!profile || !form ? (
        error ? <ErrorLine error={error} /> : <p class="muted">Loading…</p>
      ) : (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void save();
          }}
        >
          <dl class="facts">
            <div>
              <dt>Provider</dt>
              <dd>
                <span aria-hidden="true">
                  <ProviderIcon provider={profile.provider} />
                </span>{' '}
                {profile.provider ? providerName(profile.provider) : '—'}
              </dd>
            </div>
            <div>
              <dt>Status</dt>
              <dd data-mode={profile.mode}>
                {profile.mode === 'manual' ? 'Manual: an operator answers' : 'Auto: the bot answers'}
                {profile.last ? ` · last seen ${formatWhen(profile.last, tz)}` : ''}
              </dd>
            </div>
            {profile.lang && (
              <div>
                <dt>Language</dt>
                <dd>{profile.lang}</dd>
              </div>
            )}
            <div>
              <dt>Messages</dt>
              <dd>
                {plural(profile.messages, 'message')} · {plural(profile.sessions, 'session')}
              </dd>
            </div>
          </dl>
          <fieldset disabled={!editable || busy}>
            <legend class="sr-only">{name}</legend>
            <label>
              Name
              <input value={form.name} placeholder="The channel's name" onInput={(e) => set({ name: e.currentTarget.value })} />
            </label>
            <label>
              Role
              <select aria-label="Role" value={form.role} onChange={(e) => set({ role: e.currentTarget.value })}>
                <option value="">No role</option>
                {[...roleNames, ...(form.role && !roleNames.includes(form.role) ? [form.role] : [])].map((r) => (
                  <option value={r}>{r}</option>
                ))}
              </select>
            </label>
            <div class="checks">
              <label>
                <input type="checkbox" checked={form.autoMode} onChange={(e) => set({ autoMode: e.currentTarget.checked })} /> Auto mode
              </label>
              <label>
                <input type="checkbox" checked={form.subscriber} onChange={(e) => set({ subscriber: e.currentTarget.checked })} /> Subscriber
              </label>
            </div>
            <div class="tag-edit">
              <span class="label" id="editor-tags">
                Tags
              </span>
              <ul class="chips" aria-labelledby="editor-tags">
                {form.tags.map((t) => (
                  <li class="chip" data-tag={t}>
                    {t}
                    {!knownTags.includes(t) && <span class="muted"> (new)</span>}
                    {editable && (
                      <button type="button" class="link" aria-label={`Remove tag ${t}`} onClick={() => set({ tags: form.tags.filter((x) => x !== t) })}>
                        ✕
                      </button>
                    )}
                  </li>
                ))}
                {form.tags.length === 0 && <li class="muted none">No tags</li>}
              </ul>
              {editable && (
                <div class="inline">
                  <input
                    aria-label="Add a tag"
                    placeholder="A tag, existing or new"
                    list="editor-tag-names"
                    value={tagText}
                    onInput={(e) => setTagText(e.currentTarget.value)}
                    onKeyDown={(e) => {
                      if (e.key !== 'Enter') return;
                      e.preventDefault();
                      addTag();
                    }}
                  />
                  <datalist id="editor-tag-names">
                    {knownTags
                      .filter((t) => !form.tags.includes(t))
                      .map((t) => (
                        <option value={t} />
                      ))}
                  </datalist>
                  <button type="button" disabled={!tagText.trim()} onClick={addTag}>
                    Add tag
                  </button>
                </div>
              )}
            </div>
            <h3>Information</h3>
            <label>
              Gender
              <input value={form.gender} list="editor-genders" onInput={(e) => set({ gender: e.currentTarget.value })} />
              <datalist id="editor-genders">
                <option value="female" />
                <option value="male" />
                <option value="other" />
              </datalist>
            </label>
            <label>
              Phone
              <input type="tel" value={form.phone} onInput={(e) => set({ phone: e.currentTarget.value })} />
            </label>
            <label>
              E-mail
              <input type="email" value={form.email} onInput={(e) => set({ email: e.currentTarget.value })} />
            </label>
            {form.custom.length > 0 && (
              <ul class="custom-fields" aria-label="Custom fields">
                {form.custom.map((c, i) => (
                  <li key={c.key}>
                    <input
                      aria-label={`Custom field ${i + 1} name`}
                      placeholder="Name"
                      value={c.name}
                      onInput={(e) => set({ custom: form.custom.map((x) => (x.key === c.key ? { ...x, name: e.currentTarget.value } : x)) })}
                    />
                    <input
                      aria-label={`Custom field ${i + 1} value`}
                      placeholder="Value"
                      value={c.value}
                      onInput={(e) => set({ custom: form.custom.map((x) => (x.key === c.key ? { ...x, value: e.currentTarget.value } : x)) })}
                    />
                    {editable && (
                      <button type="button" class="link" aria-label={`Remove field ${c.name || i + 1}`} onClick={() => set({ custom: form.custom.filter((x) => x.key !== c.key) })}>
                        Remove
                      </button>
                    )}
                  </li>
                ))}
              </ul>
            )}
            {editable && (
              <button
                type="button"
                class="add-field"
                onClick={() => {
                  focusNewField.current = true;
                  set({ custom: [...form.custom, { key: nextField.current++, name: '', value: '' }] });
                }}
              >
                Add a field
              </button>
            )}
          </fieldset>
          {editable && (
            <div class="actions">
              <button type="submit" class="primary" disabled={busy || !changed}>
                {busy ? 'Saving…' : 'Save'}
              </button>
              <button type="button" disabled={busy || !changed} onClick={() => setForm(formOf(profile))}>
                Undo changes
              </button>
              <span role="status" class="ok">
                {status}
              </span>
            </div>
          )}
          {editable && <ErrorLine error={error} />}
        </form>
      )}
    </div>
  );
}
