import { useState } from 'preact/hooks';
import { HttpError } from '../api/http';
import { navigate } from '../router';
import { logIn } from '../state';

export function LoginPage() {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await logIn(username, password);
      const next = new URLSearchParams(location.search).get('next');
      // Only a path of this dashboard, never another site.
      navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : '/', true);
    } catch (err) {
      setError(
        err instanceof HttpError && err.status === 401
          ? 'Wrong user name or password.'
          : err instanceof HttpError && err.status === 429
            ? 'Too many failed attempts: wait a little and try again.'
            : err instanceof Error
              ? err.message
              : String(err),
      );
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="login" id="main">
      <form onSubmit={submit} aria-labelledby="login-h">
        <h1 id="login-h">botwatch</h1>
        <label>
          User name
          <input name="username" autocomplete="username" required autoFocus value={username} onInput={(e) => setUsername((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword((e.target as HTMLInputElement).value)} />
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
      </form>
    </main>
  );
}
