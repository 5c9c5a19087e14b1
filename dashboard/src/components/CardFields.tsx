// The fields of a card: a title (required), a subtitle, a picture's address and up to
// ten buttons. Used by the operator's composer (a card on its own) and by the
// broadcast composer (a card with the text).

import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import { type ButtonRow, type CardDraft, MAX_BUTTONS } from '../card';

interface CardFieldsProps {
  draft: CardDraft;
  setDraft: (update: (d: CardDraft) => CardDraft) => void;
  /** Focus the title when the fields appear. */
  autoFocus?: boolean;
  /** More actions, after the "Add a button" one (Cancel, Send…). */
  children?: ComponentChildren;
}

export function CardFields({ draft, setDraft, autoFocus = false, children }: CardFieldsProps) {
  const box = useRef<HTMLDivElement>(null);
  const nextKey = useRef(draft.rows.reduce((k, r) => Math.max(k, r.key + 1), 0));
  // Where the focus goes once the rows changed: a new row's title, or (a row removed,
  // its Remove button gone with it) the Add button.
  const focusNext = useRef<string | null>(autoFocus ? 'input' : null);
  const rows = draft.rows;
  useEffect(() => {
    const selector = focusNext.current;
    focusNext.current = null;
    if (selector) box.current?.querySelector<HTMLElement>(selector)?.focus();
  }, [rows]);

  const set = (patch: Partial<CardDraft>) => setDraft((d) => ({ ...d, ...patch }));
  const change = (key: number, patch: Partial<ButtonRow>) => setDraft((d) => ({ ...d, rows: d.rows.map((r) => (r.key === key ? { ...r, ...patch } : r)) }));
  const addRow = () => {
    if (rows.length >= MAX_BUTTONS) return;
    focusNext.current = '.button-rows li:last-child input';
    setDraft((d) => ({ ...d, rows: [...d.rows, { key: nextKey.current++, title: '', kind: 'payload', value: '' }] }));
  };
  const removeRow = (key: number) => {
    focusNext.current = '.add-button';
    setDraft((d) => ({ ...d, rows: d.rows.filter((r) => r.key !== key) }));
  };

  return (
    <div class="card-fields" ref={box}>
      <label>
        Title
        <input required maxLength={256} value={draft.title} onInput={(e) => set({ title: e.currentTarget.value })} />
      </label>
      <label>
        <span>
          Subtitle <span class="muted">(optional)</span>
        </span>
        <input maxLength={1024} value={draft.subtitle} onInput={(e) => set({ subtitle: e.currentTarget.value })} />
      </label>
      <label>
        <span>
          Image address <span class="muted">(optional, https://…)</span>
        </span>
        <input type="url" value={draft.image} placeholder="https://" onInput={(e) => set({ image: e.currentTarget.value })} />
      </label>
      {rows.length > 0 && (
        <ol class="button-rows" aria-label="Buttons">
          {rows.map((r, i) => (
            <li key={r.key}>
              <input required maxLength={64} aria-label={`Button ${i + 1} title`} placeholder="Title" value={r.title} onInput={(e) => change(r.key, { title: e.currentTarget.value })} />
              <select aria-label={`Button ${i + 1} does`} value={r.kind} onChange={(e) => change(r.key, { kind: e.currentTarget.value as ButtonRow['kind'] })}>
                <option value="payload">sends a payload</option>
                <option value="url">opens an address</option>
              </select>
              {r.kind === 'url' ? (
                <input type="url" required maxLength={2048} aria-label={`Button ${i + 1} address`} placeholder="https://" value={r.value} onInput={(e) => change(r.key, { value: e.currentTarget.value })} />
              ) : (
                <input maxLength={1024} aria-label={`Button ${i + 1} payload`} placeholder="Payload (optional)" value={r.value} onInput={(e) => change(r.key, { value: e.currentTarget.value })} />
              )}
              <button type="button" class="link" aria-label={`Remove button ${i + 1}`} onClick={() => removeRow(r.key)}>
                Remove
              </button>
            </li>
          ))}
        </ol>
      )}
      <div class="actions">
        <button type="button" class="add-button" disabled={rows.length >= MAX_BUTTONS} onClick={addRow}>
          Add a button
        </button>
        {rows.length >= MAX_BUTTONS && <span class="muted">A card holds at most {MAX_BUTTONS} buttons.</span>}
        {children && <span class="spacer" />}
        {children}
      </div>
    </div>
  );
}
