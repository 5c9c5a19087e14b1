// Where an operator writes to a user: a text, a file or a card. The message is not
// added here: the dialog topic brings it back (pending, then sent or failed), so every
// dashboard on the dialog shows the same.

import { useEffect, useRef, useState } from 'preact/hooks';
import type { Card } from '../api/types';
import { type CardDraft, EMPTY_CARD, cardOf } from '../card';
import { type Outgoing, sendMessage } from '../state';
import { ErrorLine } from './bits';
import { CardFields } from './CardFields';

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

/** A card on its own: its fields, Cancel and Send card. */
function CardBuilder({ busy, onSend, onCancel }: { busy: boolean; onSend: (card: Card) => Promise<void>; onCancel: () => void }) {
  const [draft, setDraft] = useState<CardDraft>(EMPTY_CARD);
  return (
    <form
      class="card-builder"
      aria-label="Card"
      onSubmit={(e) => {
        e.preventDefault();
        void onSend(cardOf(draft));
      }}
      onKeyDown={(e) => {
        if (e.key === 'Escape' && !busy) onCancel();
      }}
    >
      <fieldset disabled={busy}>
        <legend>A card</legend>
        <CardFields draft={draft} setDraft={setDraft} autoFocus>
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
          <button type="submit" class="send">
            {busy ? 'Sending…' : 'Send card'}
          </button>
        </CardFields>
      </fieldset>
    </form>
  );
}
