// Settings → Other: forwarding the bot's events to Google Analytics 4 and Mixpanel. One
// card per service: its settings (admins change them; everyone else reads), where its
// forwarding stands (read again every 5 s), a test event and the back-fill of the
// history (admins).

import { useEffect, useState } from 'preact/hooks';
import { HttpError, get, request } from '../api/http';
import type { IntegrationStatus, IntegrationsAnswer, SettingsDoc, TestAnswer } from '../api/types';
import { ErrorLine } from '../components/bits';
import { localDate } from '../format';
import {
  type IntegrationForm,
  SERVICE_NAMES,
  type Service,
  backfillBody,
  backfillDefaultFrom,
  backfillQueued,
  describeTest,
  explainBackfillRefusal,
  explainRefusal,
  formOf,
  lastDelivery,
  settingsBody,
  statusLines,
  storedSecret,
} from '../integrations';
import { session, useLatestRequest, useZone } from '../state';

/** How often the forwarding status is read again while the page is open. */
const STATUS_EVERY_MS = 5000;
const api = (bot: string) => `/api/v1/bots/${encodeURIComponent(bot)}`;

/** A refusal of the server in the page's words. */
function refusal(prefix: string, e: unknown, explain: (message: string) => string = explainRefusal): Error {
  const message = e instanceof Error ? e.message : String(e);
  return new Error(`${prefix}: ${e instanceof HttpError ? explain(message) : message}`);
}

export function SettingsPage({ bot }: { bot: string }) {
  const tz = useZone(bot);
  const admin = session.value?.role === 'admin';
  const [doc, setDoc] = useState<SettingsDoc | null>(null);
  const [status, setStatus] = useState<IntegrationsAnswer | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [statusError, setStatusError] = useState<unknown>(null);

  const latestSettings = useLatestRequest();
  /** Reads the settings; resolves to them (null when they cannot be read, or a later
   *  read took over). */
  const loadSettings = async (): Promise<SettingsDoc | null> => {
    const current = latestSettings();
    try {
      const d = await get<SettingsDoc>(`${api(bot)}/settings`);
      if (!current()) return null;
      setDoc(d);
      setError(null);
      return d;
    } catch (e) {
      if (current()) setError(e);
      return null;
    }
  };
  const latestStatus = useLatestRequest();
  const loadStatus = () => {
    const current = latestStatus();
    get<IntegrationsAnswer>(`${api(bot)}/integrations`)
      .then((s) => {
        if (!current()) return;
        setStatus(s);
        setStatusError(null);
      })
      .catch((e) => current() && setStatusError(e));
  };
  useEffect(() => {
    void loadSettings();
    loadStatus();
    const timer = setInterval(loadStatus, STATUS_EVERY_MS);
    return () => clearInterval(timer);
  }, [bot]);

  const refresh = async () => {
    loadStatus();
    return loadSettings();
  };

  return (
    <div class="settings-page">
      <h1>Settings</h1>
      <section class="settings-other" aria-labelledby="other-h">
        <h2 id="other-h">Other: analytics forwarding</h2>
        <p class="muted">
          botwatch forwards the bot's events to the services that are active here, from the moment they are switched on; the
          history from before then can be sent too, with the back-fill (Send history).
          {!admin && ' Admins change these settings; you see how forwarding goes.'}
        </p>
        <ErrorLine error={error} />
        <ErrorLine error={statusError ? refusal('The forwarding status cannot be read', statusError) : null} />
        {doc === null ? (
          !error && <p class="muted">Loading…</p>
        ) : (
          <div class="grid two integrations">
            {(['google_analytics', 'mixpanel'] as const).map((service) => (
              <IntegrationCard
                key={service}
                bot={bot}
                service={service}
                doc={doc}
                status={status?.[service] ?? null}
                tz={tz}
                admin={admin}
                onSaved={refresh}
              />
            ))}
          </div>
        )}
      </section>
    </div>
  );
}

// ---------------------------------------------------------------------------------------

interface CardProps {
  bot: string;
  service: Service;
  doc: SettingsDoc;
  status: IntegrationStatus | null;
  tz: string;
  admin: boolean;
  /** Reads the settings again; resolves to them. */
  onSaved: () => Promise<SettingsDoc | null>;
}

function IntegrationCard({ bot, service, doc, status, tz, admin, onSaved }: CardProps) {
  const [form, setForm] = useState<IntegrationForm>(() => formOf(service, doc));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const ga = service === 'google_analytics';
  const name = SERVICE_NAMES[service];
  const id = (what: string) => `${service}-${what}`;
  const stored = storedSecret(service, doc);
  const secretLabel = ga ? 'API secret' : 'Project token';
  const change = (patch: Partial<IntegrationForm>) => {
    setSaved(null);
    setForm((f) => ({ ...f, ...patch }));
  };

  const save = async () => {
    if (busy || !admin) return;
    setBusy(true);
    setError(null);
    setSaved(null);
    try {
      const answer = await request<SettingsDoc>('PUT', `${api(bot)}/settings`, settingsBody(service, form));
      // The form starts again from what is stored now (the secret field empty again:
      // the stored one is kept); the other card keeps what is typed in it.
      setForm(formOf(service, (await onSaved()) ?? answer));
      setSaved('Saved.');
    } catch (e) {
      setError(refusal('Not saved', e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="card integration" data-service={service} aria-labelledby={id('h')}>
      <h3 id={id('h')}>
        {name}{' '}
        <span class={status?.active ? 'state on' : 'state off'} data-active={status ? String(status.active) : ''}>
          {status === null ? '' : status.active ? 'Forwarding' : 'Off'}
        </span>
      </h3>
      <form
        class="integration-form"
        onSubmit={(e) => {
          e.preventDefault();
          void save();
        }}
      >
        <fieldset disabled={!admin || busy}>
          <legend class="sr-only">{name} settings</legend>
          {ga && (
            <label>
              Measurement ID
              <input
                name="measurement_id"
                value={form.measurementId}
                placeholder="G-XXXXXXX"
                autocomplete="off"
                spellcheck={false}
                onInput={(e) => change({ measurementId: e.currentTarget.value })}
              />
            </label>
          )}
          <label>
            {secretLabel}
            <input
              type="password"
              name={ga ? 'api_secret' : 'token'}
              value={form.secret}
              placeholder={stored ?? 'Not set'}
              autocomplete="new-password"
              data-stored={stored ?? ''}
              aria-describedby={id('secret-hint')}
              onInput={(e) => change({ secret: e.currentTarget.value })}
            />
          </label>
          <span class="hint" id={id('secret-hint')}>
            {stored ? `Set (${stored}). Leave empty to keep it; type a new one to replace it.` : 'Not set.'}
          </span>
          <label class="check">
            <input type="checkbox" name="active" checked={form.active} onChange={(e) => change({ active: e.currentTarget.checked })} /> Active
          </label>
        </fieldset>
        {admin && (
          <div class="actions">
            <button type="submit" class="primary" disabled={busy}>
              {busy ? 'Saving…' : 'Save'}
            </button>
            <span role="status" class="ok">
              {saved}
            </span>
          </div>
        )}
        <ErrorLine error={error} />
      </form>
      <ForwardingStatus service={service} status={status} tz={tz} />
      {admin && <TestEvent bot={bot} service={service} />}
      {admin && <Backfill bot={bot} service={service} tz={doc.timezone || tz} />}
    </section>
  );
}

function ForwardingStatus({ service, status, tz }: { service: Service; status: IntegrationStatus | null; tz: string }) {
  if (status === null) return <p class="muted forwarding-status">Reading the forwarding status…</p>;
  const lines = statusLines(status);
  const last = lastDelivery(status, tz);
  return (
    <ul class="forwarding-status" aria-label={`${SERVICE_NAMES[service]} forwarding`}>
      <li class="sent" data-sent={status.sent}>
        {lines.sent}
      </li>
      <li class="pending" data-pending={status.pending}>
        {lines.pending}
      </li>
      <li class="skipped" data-skipped={status.skipped}>
        {lines.skipped}
        {service === 'google_analytics' && <span class="muted"> (GA4 does not take events older than 72 hours)</span>}
      </li>
      <li class="behind">{lines.behind}</li>
      <li class={last.ok === null ? 'last muted' : last.ok ? 'last ok' : 'last error'} data-ok={last.ok === null ? '' : String(last.ok)}>
        {last.text}
      </li>
    </ul>
  );
}

function TestEvent({ bot, service }: { bot: string; service: Service }) {
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<ReturnType<typeof describeTest> | null>(null);
  const [error, setError] = useState<unknown>(null);
  const send = async () => {
    setBusy(true);
    setError(null);
    setResult(null);
    try {
      const a = await request<TestAnswer>('POST', `${api(bot)}/integrations/${service}/test`);
      setResult(describeTest(service, a));
    } catch (e) {
      setError(refusal('No test event sent', e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="test-event">
      <button type="button" disabled={busy} onClick={() => void send()}>
        {busy ? 'Sending…' : 'Send test event'}
      </button>
      <div class="test-result" role="status" data-ok={result ? String(result.ok) : ''}>
        {result && (
          <>
            <p class={result.ok ? 'ok' : 'error'}>{result.title}</p>
            {result.details.length > 0 && (
              <ul>
                {result.details.map((d) => (
                  <li>{d}</li>
                ))}
              </ul>
            )}
          </>
        )}
      </div>
      <ErrorLine error={error} />
    </div>
  );
}

/** The back-fill: the history from a day on (in the bot's zone) goes out after what is
 *  live; the server only queues it (202), its progress shows in Sent/Skipped. */
function Backfill({ bot, service, tz }: { bot: string; service: Service; tz: string }) {
  // null: the default day (followed if the zone changes), until a day is picked.
  const [picked, setPicked] = useState<string | null>(null);
  const from = picked ?? backfillDefaultFrom(tz);
  const [busy, setBusy] = useState(false);
  const [queued, setQueued] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const ga = service === 'google_analytics';
  const id = (what: string) => `${service}-backfill-${what}`;
  const send = async () => {
    if (busy) return;
    setBusy(true);
    setError(null);
    setQueued(null);
    const body = backfillBody(from);
    try {
      await request<null>('POST', `${api(bot)}/integrations/${service}/backfill`, body);
      setQueued(backfillQueued(body.from));
    } catch (e) {
      setError(refusal('History not queued', e, explainBackfillRefusal));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="backfill">
      <label>
        Send history from
        <input
          type="date"
          name="backfill_from"
          value={from}
          max={localDate(new Date(), tz)}
          aria-describedby={ga ? id('hint') : undefined}
          onInput={(e) => {
            setQueued(null);
            setPicked(e.currentTarget.value);
          }}
        />
      </label>
      {ga && (
        <span class="backfill-hint" id={id('hint')}>
          GA4 takes events at most 72 hours back: older ones are counted as skipped.
        </span>
      )}
      <div class="actions">
        <button type="button" disabled={busy} onClick={() => void send()}>
          {busy ? 'Sending…' : 'Send history'}
        </button>
        <span role="status" class="ok backfill-result">
          {queued}
        </span>
      </div>
      <ErrorLine error={error} />
    </div>
  );
}
