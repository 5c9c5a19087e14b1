// What the live snapshots say of the storage: a loss of data the server found (Redis
// emptied, replaced or trimmed behind its back) and has not been told to accept. The
// server starts every subscription again with a fresh snapshot when that changes, and
// each snapshot (and each overview or statistics frame) carries `data_loss`: the loss,
// or null.

import type { DataLossItem } from '../api/types';
import type { Frame } from './topic';

/** The frame's `data_loss` (null: none), or undefined when the frame does not say. */
export function dataLossIn(frame: Frame): DataLossItem | null | undefined {
  const data = frame.data;
  if (frame.kind === 'error' || typeof data !== 'object' || data === null || !('data_loss' in data)) return undefined;
  return (data as { data_loss: DataLossItem | null }).data_loss ?? null;
}

/** What an operator runs to accept the loss (`/readyz` names it too). */
export const CLEAR_COMMAND = 'botwatch data-loss clear';

/** The banner's words for a loss of data, as text (the banner sets the command as code). */
export function dataLossText(loss: DataLossItem): string {
  return `Storage lost data: ${loss.reason}. Figures may miss events; an operator runs ${CLEAR_COMMAND}.`;
}
