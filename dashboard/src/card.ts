// A card as it is being built (the operator's composer, the broadcast composer), and
// the card the API takes from it. Pure: unit-tested in tests/.

import type { Card } from './api/types';

/** A card holds at most this many buttons (the server refuses more). */
export const MAX_BUTTONS = 10;

export interface ButtonRow {
  /** A stable key for the row (rows are removed from the middle). */
  key: number;
  title: string;
  /** What the button does: sends a payload back to the bot, or opens an address. */
  kind: 'payload' | 'url';
  value: string;
}

export interface CardDraft {
  title: string;
  subtitle: string;
  image: string;
  rows: ButtonRow[];
}

export const EMPTY_CARD: CardDraft = { title: '', subtitle: '', image: '', rows: [] };

/** The card as the API takes it: trimmed, empty optional parts left out. */
export function cardOf(d: CardDraft): Card {
  const c: Card = { title: d.title.trim() };
  if (d.subtitle.trim()) c.subtitle = d.subtitle.trim();
  if (d.image.trim()) c.image = d.image.trim();
  if (d.rows.length) c.buttons = d.rows.map((r) => (r.value.trim() ? { title: r.title.trim(), [r.kind]: r.value.trim() } : { title: r.title.trim() }));
  return c;
}
