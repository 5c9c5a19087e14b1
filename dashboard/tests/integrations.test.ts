import { describe, expect, it } from 'vitest';
import type { IntegrationStatus, SettingsDoc, TestAnswer } from '../src/api/types';
import {
  backfillBody,
  backfillDefaultFrom,
  backfillQueued,
  behindText,
  describeTest,
  explainBackfillRefusal,
  explainRefusal,
  formOf,
  humaniseSeconds,
  lastDelivery,
  settingsBody,
  statusLines,
  storedSecret,
} from '../src/integrations';

const doc = (integrations: SettingsDoc['integrations']): SettingsDoc => ({ timezone: 'UTC', session_timeout_secs: 1800, integrations });
const STORED = doc({
  google_analytics: { measurement_id: 'G-ABCD1234', api_secret: '********mnop', active: true },
  mixpanel: { token: '********', active: false },
});
const status = (s: Partial<IntegrationStatus>): IntegrationStatus => ({ active: true, sent: 0, skipped: 0, pending: 0, pending_more: false, ...s });
const test = (a: { ok: boolean; status?: number | null; answer: unknown }) => a as unknown as TestAnswer;

describe('the form and what a save sends', () => {
  it('starts from the stored settings, the secret field empty', () => {
    expect(formOf('google_analytics', STORED)).toEqual({ measurementId: 'G-ABCD1234', secret: '', active: true });
    expect(formOf('mixpanel', STORED)).toEqual({ measurementId: '', secret: '', active: false });
    expect(formOf('google_analytics', doc(undefined))).toEqual({ measurementId: '', secret: '', active: false });
    expect(storedSecret('google_analytics', STORED)).toBe('********mnop');
    expect(storedSecret('mixpanel', STORED)).toBe('********');
    expect(storedSecret('mixpanel', doc({ google_analytics: { active: false }, mixpanel: { token: null, active: false } }))).toBeNull();
  });
  it('sends a secret only when one was typed', () => {
    expect(settingsBody('google_analytics', { measurementId: ' G-TEST1234 ', secret: '', active: true })).toEqual({
      integrations: { google_analytics: { measurement_id: 'G-TEST1234', active: true } },
    });
    expect(settingsBody('google_analytics', { measurementId: 'G-TEST1234', secret: ' s3cret ', active: false })).toEqual({
      integrations: { google_analytics: { measurement_id: 'G-TEST1234', api_secret: 's3cret', active: false } },
    });
    expect(settingsBody('mixpanel', { measurementId: 'ignored', secret: '   ', active: true })).toEqual({ integrations: { mixpanel: { active: true } } });
    expect(settingsBody('mixpanel', { measurementId: '', secret: 'tok', active: false })).toEqual({ integrations: { mixpanel: { token: 'tok', active: false } } });
  });
  it('clears an emptied measurement id', () => {
    expect(settingsBody('google_analytics', { measurementId: '  ', secret: '', active: false }).integrations.google_analytics).toEqual({ measurement_id: null, active: false });
  });
});

describe('the forwarding status in words', () => {
  it('humanises seconds in at most two units', () => {
    expect(humaniseSeconds(0)).toBe('0 s');
    expect(humaniseSeconds(44.6)).toBe('45 s');
    expect(humaniseSeconds(60)).toBe('1 min');
    expect(humaniseSeconds(200)).toBe('3 min 20 s');
    expect(humaniseSeconds(3600)).toBe('1 h');
    expect(humaniseSeconds(7500)).toBe('2 h 5 min');
    expect(humaniseSeconds(86400)).toBe('1 day');
    expect(humaniseSeconds(3 * 86400 + 4 * 3600 + 59)).toBe('3 days 4 h');
    expect(humaniseSeconds(-5)).toBe('0 s');
  });
  it('says how far behind forwarding is', () => {
    expect(behindText(0)).toBe('Up to date');
    expect(behindText(0.4)).toBe('Up to date');
    expect(behindText(90)).toBe('Behind by 1 min 30 s');
    expect(behindText(null)).toBe('Not started yet');
    expect(behindText(undefined)).toBe('Not started yet');
  });
  it('counts what was sent and skipped', () => {
    expect(statusLines(status({ sent: 1, skipped: 0, behind_secs: 0 }))).toEqual({ sent: 'Sent 1 event', pending: 'Pending 0', skipped: 'Skipped 0', behind: 'Up to date' });
    expect(statusLines(status({ sent: 12345, skipped: 1200, behind_secs: 7500, pending: 10000, pending_more: true }))).toEqual({
      sent: 'Sent 12,345 events',
      pending: 'Pending 10,000+',
      skipped: 'Skipped 1,200',
      behind: 'Behind by 2 h 5 min',
    });
  });
  it('tells the last delivery, at its time in the bot zone', () => {
    const now = new Date('2026-11-27T10:00:00Z');
    expect(lastDelivery(status({}), 'UTC', now)).toEqual({ ok: null, text: 'No delivery yet' });
    expect(lastDelivery(status({ last_at: '2026-11-27T09:05:00Z', last_ok: true }), 'Europe/Kyiv', now)).toEqual({ ok: true, text: 'Last delivery: ok at 11:05' });
    expect(lastDelivery(status({ last_at: '2026-11-26T09:05:00Z', last_ok: false, last_error: '403 Forbidden: bad secret' }), 'UTC', now)).toEqual({
      ok: false,
      text: 'Last delivery failed at 26 Nov, 09:05: 403 Forbidden: bad secret',
    });
  });
});

describe('a test event answer', () => {
  it('is accepted', () => {
    expect(describeTest('google_analytics', test({ ok: true, status: 200, answer: { validationMessages: [] } }))).toEqual({ ok: true, title: 'Test event accepted', details: [] });
    expect(describeTest('mixpanel', test({ ok: true, status: 200, answer: { code: 200, num_records_imported: 1, status: 'OK' } })).title).toBe('Test event accepted');
  });
  it('lists GA4 validation messages with their field', () => {
    const a = test({
      ok: false,
      status: 200,
      answer: {
        validationMessages: [
          { fieldPath: 'events[0].name', description: 'Event name must be 40 characters or fewer.', validationCode: 'NAME_INVALID' },
          { fieldPath: '', description: 'Measurement ID not found.', validationCode: 'VALUE_INVALID' },
          { validationCode: 'VALUE_REQUIRED' },
        ],
      },
    });
    expect(describeTest('google_analytics', a)).toEqual({
      ok: false,
      title: 'Google Analytics 4 refused the test event',
      details: ['Event name must be 40 characters or fewer. (field: events[0].name)', 'Measurement ID not found.', 'VALUE_REQUIRED'],
    });
  });
  it('gives the status and words of a refusal otherwise', () => {
    expect(describeTest('mixpanel', test({ ok: false, status: 401, answer: { error: 'Invalid project token', status: 0 } }))).toEqual({
      ok: false,
      title: 'Mixpanel answered with status 401',
      details: ['{"error":"Invalid project token","status":0}'],
    });
    expect(describeTest('google_analytics', test({ ok: false, status: 500, answer: 'Internal error' }))).toEqual({
      ok: false,
      title: 'Google Analytics 4 answered with status 500',
      details: ['Internal error'],
    });
    expect(describeTest('mixpanel', test({ ok: false, status: 502, answer: 'x'.repeat(400) })).details[0]).toHaveLength(301);
  });
  it('says when the service did not answer', () => {
    expect(describeTest('google_analytics', test({ ok: false, status: null, answer: 'no answer: error sending request' }))).toEqual({
      ok: false,
      title: 'Google Analytics 4 did not answer',
      details: ['no answer: error sending request'],
    });
    expect(describeTest('mixpanel', test({ ok: false, answer: null })).details).toEqual([]);
  });
});

describe('a refusal of the server', () => {
  it('names the fields as the page labels them', () => {
    expect(explainRefusal('integrations.google_analytics.measurement_id: a GA4 measurement id like G-XXXXXXX, or null')).toBe(
      'Measurement ID: a GA4 measurement id like G-XXXXXXX, or null',
    );
    expect(explainRefusal('integrations.google_analytics.active: needs measurement_id and api_secret')).toBe(
      'Active (Google Analytics 4): needs a Measurement ID and an API secret',
    );
    expect(explainRefusal('integrations.mixpanel.active: needs token')).toBe('Active (Mixpanel): needs a Project token');
    expect(explainRefusal('integrations: mixpanel is not configured (Settings → Other)')).toBe('integrations: mixpanel is not configured (Settings → Other)');
  });
});

describe('the back-fill', () => {
  it('starts 30 days before today in the bot zone', () => {
    const now = new Date('2026-11-27T10:00:00Z');
    expect(backfillDefaultFrom('UTC', now)).toBe('2026-10-28');
    // 20:00 UTC on the 27th is the 28th in Tokyo; 03:00 UTC on the 27th is still the 26th in New York.
    expect(backfillDefaultFrom('Asia/Tokyo', new Date('2026-11-27T20:00:00Z'))).toBe('2026-10-29');
    expect(backfillDefaultFrom('America/New_York', new Date('2026-11-27T03:00:00Z'))).toBe('2026-10-27');
    // Across a year and a leap day.
    expect(backfillDefaultFrom('UTC', new Date('2028-01-15T12:00:00Z'))).toBe('2027-12-16');
    expect(backfillDefaultFrom('UTC', new Date('2028-03-20T12:00:00Z'))).toBe('2028-02-19');
    expect(backfillDefaultFrom('UTC')).toMatch(/^\d{4}-\d{2}-\d{2}$/);
  });
  it('sends the day as the server reads it', () => {
    expect(backfillBody('2026-10-28')).toEqual({ from: '2026-10-28' });
    expect(backfillBody(' 2026-10-28 ')).toEqual({ from: '2026-10-28' });
    expect(backfillBody('')).toEqual({ from: '' });
  });
  it('says what happens once queued', () => {
    expect(backfillQueued('2026-10-28')).toBe('History from 2026-10-28 is queued: it goes out after what is live; progress shows in Sent/Skipped.');
  });
  it('names the day field of a refusal as the page labels it', () => {
    expect(explainBackfillRefusal('from: expected a date YYYY-MM-DD')).toBe('Send history from: expected a date YYYY-MM-DD');
    expect(explainBackfillRefusal('integrations: mixpanel is not configured (Settings → Other)')).toBe('integrations: mixpanel is not configured (Settings → Other)');
  });
});
