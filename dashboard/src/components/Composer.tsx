// Where an operator writes to a user: a text, a file or a card. The message is not
// added here: the dialog topic brings it back (pending, then sent or failed), so every
// dashboard on the dialog shows the same.

import { useEffect, useRef, useState } from 'preact/hooks';
import type { Card } from '../api/types';
import { type Outgoing, sendMessage } from '../state';
import { ErrorLine } from './bits';

/** A card holds at most this many buttons (the server refuses more). */
const MAX_BUTTONS = 10;

interface ComposerProps {
  bot: string;
  user: string;
  name: string;
  /** What is typed, kept by the parent: a dialog handed back to the bot while an
   *  operator was typing hides the composer, and the text must be there when it is
   *  taken over again. */
  text: string;
  setText: (text: string) => void;
  onSent?: () => void;
}

export function Composer({ bot, user, name, text, setText, onSent }: ComposerProps) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [building, setBuilding] = useState(false);
  const input = useRef<HTMLTextAreaElement>(null);
  const picker = useRef<HTMLInputElement>(null);
  const cardButton = useRef<HTMLButtonElement>(null);
  // The control that sent: disabled while sending, it lost the focus, which goes back
  // to it after (or to the text when it is gone: the card builder closed).
  const sender = useRef<HTMLElement | null>(null);

  useEffect(() => {
    const el = sender.current;
    if (busy || !el) return;
    sender.current = null;
    const active = document.activeElement;
    if (active && active !== document.body) return;
    (el.isConnected ? el : input.current)?.focus();
  }, [busy]);

  /** Sends; whether the server took the message. */
  const send = async (what: Outgoing): Promise<boolean> => {
    sender.current = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    setBusy(true);
    setError(null);
    try {
      await sendMessage(bot, user, what);
      onSent?.();
      return true;
    } catch (e) {
      setError(e);
      return false;
    } finally {
      setBusy(false);
    }
  };

  const sendText = async () => {
    if (busy || !text.trim()) return;
    if (await send({ text })) setText('');
  };
  // What is typed goes with the file as its caption.
  const sendFile = async (file: File) => {
    if (await send(text.trim() ? { file, caption: text } : { file })) setText('');
  };
  const sendCard = async (card: Card) => {
    if (await send({ card })) setBuilding(false);
  };

  // Closed without sending: the focus goes back to what opened it.
  const closeBuilder = () => {
    setBuilding(false);
    cardButton.current?.focus();
  };

  return (
    <div class="composer">
      {building && <CardBuilder busy={busy} onSend={sendCard} onCancel={closeBuilder} />}
      <form
        class="compose-row"
        onSubmit={(e) => {
          e.preventDefault();
          void sendText();
        }}
      >
        <textarea
          ref={input}
          rows={2}
          value={text}
          disabled={busy}
          aria-label={`Message to ${name}`}
          placeholder={`Write to ${name}… (Enter sends, Shift+Enter: a new line)`}
          onInput={(e) => setText(e.currentTarget.value)}
          onKeyDown={(e) => {
            // Enter sends; Shift+Enter a new line; Enter that ends an IME composition
            // only ends it.
            if (e.key !== 'Enter' || e.shiftKey || e.isComposing) return;
            e.preventDefault();
            void sendText();
          }}
        />
        <input
          ref={picker}
          type="file"
          hidden
          aria-label="File to send"
          onChange={(e) => {
            const file = e.currentTarget.files?.[0];
            // Cleared, so the same file can be chosen again (after a failure).
            e.currentTarget.value = '';
            if (file) void sendFile(file);
          }}
        />
        <button type="button" class="attach" disabled={busy} aria-label="Send a file" title="Send a file (what is typed goes with it as its caption)" onClick={() => picker.current?.click()}>
          +
        </button>
        <button ref={cardButton} type="button" class="card-open" disabled={busy} aria-expanded={building} aria-label="Compose a card" title="Compose a card: a title, a picture, buttons" onClick={() => setBuilding((b) => !b)}>
          Card
        </button>
        <button type="submit" class="send" disabled={busy || !text.trim()}>
          {busy ? 'Sending…' : 'Send'}
        </button>
      </form>
      <ErrorLine error={error} />
    </div>
  );
}

interface ButtonRow {
  /** A stable key for the row (rows are removed from the middle). */
  key: number;
  title: string;
  /** What the button does: sends a payload back to the bot, or opens an address. */
  kind: 'payload' | 'url';
  value: string;
}

/** A card: a title (required), a subtitle, a picture's address and up to ten buttons. */
function CardBuilder({ busy, onSend, onCancel }: { busy: boolean; onSend: (card: Card) => Promise<void>; onCancel: () => void }) {
  const [title, setTitle] = useState('');
  const [subtitle, setSubtitle] = useState('');
  const [image, setImage] = useState('');
  const [rows, setRows] = useState<ButtonRow[]>([]);
  const nextKey = useRef(0);
  const form = useRef<HTMLFormElement>(null);
  // Where the focus goes once the rows changed: a new row's title, or (a row removed,
  // its Remove button gone with it) the Add button.
  const focusNext = useRef<string | null>('input');
  useEffect(() => {
    const selector = focusNext.current;
    focusNext.current = null;
    if (selector) form.current?.querySelector<HTMLElement>(selector)?.focus();
  }, [rows]);

  const change = (key: number, patch: Partial<ButtonRow>) => setRows((rs) => rs.map((r) => (r.key === key ? { ...r, ...patch } : r)));
  const addRow = () => {
    if (rows.length >= MAX_BUTTONS) return;
    focusNext.current = '.button-rows li:last-child input';
    setRows((rs) => [...rs, { key: nextKey.current++, title: '', kind: 'payload', value: '' }]);
  };
  const removeRow = (key: number) => {
    focusNext.current = '.add-button';
    setRows((rs) => rs.filter((r) => r.key !== key));
  };

  const card = (): Card => {
    const c: Card = { title: title.trim() };
    if (subtitle.trim()) c.subtitle = subtitle.trim();
    if (image.trim()) c.image = image.trim();
    if (rows.length) c.buttons = rows.map((r) => (r.value.trim() ? { title: r.title.trim(), [r.kind]: r.value.trim() } : { title: r.title.trim() }));
    return c;
  };

  return (
    <form
      ref={form}
      class="card-builder"
      aria-label="Card"
      onSubmit={(e) => {
        e.preventDefault();
        void onSend(card());
      }}
      onKeyDown={(e) => {
        if (e.key === 'Escape' && !busy) onCancel();
      }}
    >
      <fieldset disabled={busy}>
        <legend>A card</legend>
        <label>
          Title
          <input required maxLength={256} value={title} onInput={(e) => setTitle(e.currentTarget.value)} />
        </label>
        <label>
          <span>
            Subtitle <span class="muted">(optional)</span>
          </span>
          <input maxLength={1024} value={subtitle} onInput={(e) => setSubtitle(e.currentTarget.value)} />
        </label>
        <label>
          <span>
            Image address <span class="muted">(optional, https://…)</span>
          </span>
          <input type="url" value={image} placeholder="https://" onInput={(e) => setImage(e.currentTarget.value)} />
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
          <span class="spacer" />
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
          <button type="submit" class="send">
            {busy ? 'Sending…' : 'Send card'}
          </button>
        </div>
      </fieldset>
    </form>
  );
}
