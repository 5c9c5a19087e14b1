// Every HTTP call of the dashboard: JSON in and out (a file goes out as a form), the
// session cookie (sent by the browser), the CSRF header on changes, and one error type
// the pages show.

let csrf: string | null = null;
let onUnauthorized: () => void = () => {};

export function setCsrf(value: string | null): void {
  csrf = value;
}

/** Called when the server answers 401 (the session ended): the app shows the login. */
export function whenUnauthorized(f: () => void): void {
  onUnauthorized = f;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export type Params = Record<string, string | number | boolean | string[] | null | undefined>;

/** `path?params`: empty values left out, arrays repeated (`tag=a&tag=b`). */
export function withParams(path: string, params: Params = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else q.append(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** `body`: sent as JSON, or as multipart/form-data when it is a FormData (a file; the
 *  browser writes that Content-Type itself, with the parts' boundary). */
export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const form = body instanceof FormData;
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined && !form) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-Botwatch-CSRF'] = csrf;
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : form ? body : JSON.stringify(body),
    });
  } catch {
    throw new HttpError(0, 'unreachable', 'botwatch does not answer: check the connection');
  }
  const text = await response.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const e = (json ?? {}) as { error?: string; message?: string };
    if (response.status === 401 && path !== '/api/v1/session') onUnauthorized();
    throw new HttpError(response.status, e.error ?? 'http_' + response.status, e.message ?? response.statusText);
  }
  return json as T;
}

export const get = <T>(path: string, params?: Params): Promise<T> => request<T>('GET', withParams(path, params));
