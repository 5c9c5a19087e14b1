// Settings → Other: forwarding a bot's events to Google Analytics 4 and Mixpanel. What
// the page says of a service (its status, a test event's answer, a refusal) and what
// it sends when saved, without the DOM.

import type { IntegrationStatus, SettingsDoc, TestAnswer } from './api/types';
import { addDays, formatWhen, localDate, plural } from './format';

export type Service = 'google_analytics' | 'mixpanel';

export const SERVICE_NAMES: Record<Service, string> = {
  google_analytics: 'Google Analytics 4',
  mixpanel: 'Mixpanel',
};

/** What a card's form holds. `secret`: the API secret (GA4) or the project token
 *  (Mixpanel) as typed; empty keeps the stored one. */
export interface IntegrationForm {
  measurementId: string;
  secret: string;
  active: boolean;
}

/** The form as the stored settings fill it (a secret is never shown: the field starts
 *  empty, which keeps it). */
export function formOf(service: Service, doc: SettingsDoc | null): IntegrationForm {
  const i = doc?.integrations;
  if (service === 'google_analytics') {
    const ga = i?.google_analytics;
    return { measurementId: ga?.measurement_id ?? '', secret: '', active: ga?.active ?? false };
  }
  return { measurementId: '', secret: '', active: i?.mixpanel.active ?? false };
}

/** The stored secret as the server shows it (masked, `********` and maybe its last
 *  four characters), or null when none is set. */
export function storedSecret(service: Service, doc: SettingsDoc | null): string | null {
  const i = doc?.integrations;
  const s = service === 'google_analytics' ? i?.google_analytics.api_secret : i?.mixpanel.token;
  return s ? s : null;
}

/** The body of `PUT /api/v1/bots/{bot}/settings` for one card: the secret only when
 *  one was typed (an empty field keeps the stored one); an empty measurement id clears
 *  it. */
export function settingsBody(service: Service, form: IntegrationForm): { integrations: Record<string, Record<string, unknown>> } {
  const secret = form.secret.trim();
  if (service === 'google_analytics') {
    const measurementId = form.measurementId.trim();
    return {
      integrations: {
        google_analytics: {
          measurement_id: measurementId === '' ? null : measurementId,
          ...(secret ? { api_secret: secret } : {}),
          active: form.active,
        },
      },
    };
  }
  return { integrations: { mixpanel: { ...(secret ? { token: secret } : {}), active: form.active } } };
}

/** `45 s`, `3 min 20 s`, `2 h 5 min`, `3 days 4 h`: at most two units. */
export function humaniseSeconds(secs: number): string {
  const s = Math.max(0, Math.round(secs));
  if (s < 60) return `${s} s`;
  const two = (big: number, bigUnit: string, small: number, smallUnit: string) => (small ? `${big} ${bigUnit} ${small} ${smallUnit}` : `${big} ${bigUnit}`);
  if (s < 3600) return two(Math.floor(s / 60), 'min', s % 60, 's');
  if (s < 86400) return two(Math.floor(s / 3600), 'h', Math.floor((s % 3600) / 60), 'min');
  const days = Math.floor(s / 86400);
  return two(days, days === 1 ? 'day' : 'days', Math.floor((s % 86400) / 3600), 'h');
}

/** How far forwarding is behind the log: "Up to date" (under a second), "Behind by
 *  3 min", or "Not started yet" (it never ran). */
export function behindText(secs: number | null | undefined): string {
  if (secs === null || secs === undefined) return 'Not started yet';
  if (Math.round(secs) <= 0) return 'Up to date';
  return `Behind by ${humaniseSeconds(secs)}`;
}

/** The service's last answer to a batch, in words (the time in the bot's zone). */
export function lastDelivery(status: IntegrationStatus, tz: string, now: Date = new Date()): { ok: boolean | null; text: string } {
  if (!status.last_at || status.last_ok === null || status.last_ok === undefined) return { ok: null, text: 'No delivery yet' };
  const at = formatWhen(status.last_at, tz, now);
  if (status.last_ok) return { ok: true, text: `Last delivery: ok at ${at}` };
  return { ok: false, text: `Last delivery failed at ${at}: ${status.last_error || 'no reason given'}` };
}

/** The figures of a status line by line: sent, pending, skipped, behind. */
export function statusLines(status: IntegrationStatus): { sent: string; pending: string; skipped: string; behind: string } {
  const pending = status.pending ?? 0;
  return {
    sent: `Sent ${plural(status.sent, 'event')}`,
    pending: `Pending ${pending.toLocaleString('en')}${status.pending_more ? '+' : ''}`,
    skipped: `Skipped ${status.skipped.toLocaleString('en')}`,
    behind: behindText(status.behind_secs),
  };
}

interface GaValidationMessage {
  fieldPath?: string;
  description?: string;
  validationCode?: string;
}

const MAX_ANSWER = 300;

/** Whatever a service answered, as a short text. */
function answerText(answer: unknown): string {
  if (answer === null || answer === undefined) return '';
  const text = typeof answer === 'string' ? answer : JSON.stringify(answer);
  return text.length > MAX_ANSWER ? text.slice(0, MAX_ANSWER) + '…' : text;
}

/** What a test event came to: a headline and the details (GA4's validation messages,
 *  each with the field it is about; else the service's status and words). */
export function describeTest(service: Service, a: TestAnswer): { ok: boolean; title: string; details: string[] } {
  if (a.ok) return { ok: true, title: 'Test event accepted', details: [] };
  const answer = a.answer as unknown;
  const name = SERVICE_NAMES[service];
  if (a.status === null || a.status === undefined) {
    const said = answerText(answer);
    return { ok: false, title: `${name} did not answer`, details: said ? [said] : [] };
  }
  const messages = service === 'google_analytics' && answer && typeof answer === 'object' ? (answer as { validationMessages?: unknown }).validationMessages : undefined;
  if (Array.isArray(messages) && messages.length > 0) {
    const details = (messages as GaValidationMessage[]).map((m) => {
      const text = m.description?.trim() || m.validationCode || 'A validation message without a description';
      return m.fieldPath ? `${text} (field: ${m.fieldPath})` : text;
    });
    return { ok: false, title: `${name} refused the test event`, details };
  }
  const said = answerText(answer);
  return { ok: false, title: `${name} answered with status ${a.status}`, details: said ? [said] : [] };
}

/** The server's field names in a refusal, as the page labels them. */
const FIELD_NAMES: Array<[RegExp, string]> = [
  [/\bintegrations\.google_analytics\.measurement_id\b/g, 'Measurement ID'],
  [/\bintegrations\.google_analytics\.api_secret\b/g, 'API secret'],
  [/\bintegrations\.google_analytics\.active\b/g, 'Active (Google Analytics 4)'],
  [/\bintegrations\.mixpanel\.token\b/g, 'Project token'],
  [/\bintegrations\.mixpanel\.active\b/g, 'Active (Mixpanel)'],
  [/\bmeasurement_id\b/g, 'a Measurement ID'],
  [/\bapi_secret\b/g, 'an API secret'],
  [/\bneeds token\b/g, 'needs a Project token'],
];

/** A refusal of the server (`field: reason`) in the page's words. */
export function explainRefusal(message: string): string {
  return FIELD_NAMES.reduce((m, [re, label]) => m.replace(re, label), message);
}

// ---------------------------------------------------------------------------------------
// The back-fill: the history from a day on, sent after what is live.

/** How many days back the back-fill starts unless changed. */
export const BACKFILL_DAYS = 30;

/** The day the back-fill starts at unless changed: 30 days before today in the bot's
 *  zone (`YYYY-MM-DD`, as a date input holds it). */
export function backfillDefaultFrom(tz: string, now: Date = new Date()): string {
  return addDays(localDate(now, tz), -BACKFILL_DAYS);
}

/** The body of `POST /api/v1/bots/{bot}/integrations/{service}/backfill`. */
export function backfillBody(from: string): { from: string } {
  return { from: from.trim() };
}

/** What the page says once the server took the back-fill (202). */
export function backfillQueued(from: string): string {
  return `History from ${from.trim()} is queued: it goes out after what is live; progress shows in Sent/Skipped.`;
}

/** A refusal of a back-fill (`from: expected a date YYYY-MM-DD`) in the page's words. */
export function explainBackfillRefusal(message: string): string {
  return explainRefusal(message.replace(/^from:/, 'Send history from:'));
}
