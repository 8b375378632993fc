/**
 * Live feeds over LISTEN/NOTIFY with PostGraphile v5's built-in pgSubscriber and grafast's `listen`
 * (the v5 replacement of the v4-only @graphile/pg-pubsub plugin). The database notifies from the same
 * transactions that change the state (sql/functions/10_common.sql, 30_full_scans.sql and
 * 40_scan_results.sql): 'dsx_full_scan:<id>' on every status change and, throttled to one per 200 ms
 * per scan, on progress; 'dsx_scan_results:<scope id>' with the ids of the results each statement
 * finalized. A NOTIFY only says "look again": each event is read back under the caller's role when it
 * is emitted, so counts are exact and never go backwards.
 */
import { access, context, lambda, listen, SafeError, type GrafastSubscriber, type Step } from 'postgraphile/grafast';
import { extendSchema, gql } from 'postgraphile/utils';
import { fullScanProgressEventGet, type FullScanProgressEvent } from '../../src/db/sql/full-scans.ts';
import { fromQueryConfigClient, type QueryConfigClient } from '../../src/db/sql/queryable.ts';
import { rowIdOf } from './row-id.ts';

type Subscriber = GrafastSubscriber<Record<string, string>>;
type WithPgClient = (settings: unknown, cb: (client: QueryConfigClient) => Promise<unknown>) => Promise<unknown>;

/** How long without a NOTIFY before the stream checks the scan itself (covers a missed LISTEN race). */
const SAFETY_POLL_MS = 2000;

type ProgressRow = FullScanProgressEvent;

/**
 * The events of one full scan: the current state first, then one per NOTIFY, ending with the first
 * event that shows the scan finished (completed, failed, or canceled with nothing left in flight). Each
 * event is a snapshot read when it is emitted, so counts never go backwards and exactly one event
 * shows the finished state.
 */
async function* fullScanEvents(sub: Subscriber, read: () => Promise<ProgressRow | undefined>, id: string): AsyncGenerator<ProgressRow & { event: string }> {
  const stream = (await sub.subscribe(`dsx_full_scan:${id}`)) as AsyncIterableIterator<string>;
  try {
    const first = await read();
    if (!first) throw new SafeError(`unknown full scan id ${id}`);
    yield { ...first, event: 'initial' };
    if (first.finishedAt) return;
    let pending = stream.next();
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const next = await Promise.race([
        pending,
        new Promise<'poll'>((r) => { timer = setTimeout(() => r('poll'), SAFETY_POLL_MS); }),
      ]);
      clearTimeout(timer);
      if (next !== 'poll') {
        if (next.done) return;
        pending = stream.next();
      }
      const row = await read();
      if (!row) return;
      if (next === 'poll' && !row.finishedAt) continue;
      const kind = next === 'poll' ? 'status' : (JSON.parse(next.value) as { kind?: string }).kind ?? 'status';
      yield { ...row, event: row.finishedAt ? 'finished' : kind };
      if (row.finishedAt) return;
    }
  } finally {
    await stream.return?.();
  }
}

/** Finalized results of one scope, one event per result, optionally only one outcome. */
async function* scanResultEvents(sub: Subscriber, scopeId: string, outcome: string | null): AsyncGenerator<{ id: number }> {
  const stream = (await sub.subscribe(`dsx_scan_results:${scopeId}`)) as AsyncIterableIterator<string>;
  try {
    for await (const payload of stream) {
      const { r } = JSON.parse(payload) as { r: [number, string][] };
      for (const [id, o] of r) if (!outcome || o === outcome) yield { id };
    }
  } finally {
    await stream.return?.();
  }
}

/** A GrafastSubscriber whose topics are produced by `events`. */
function subscriberOf<T>(events: (topic: string) => AsyncGenerator<T>): GrafastSubscriber<Record<string, T>> {
  return { subscribe: (topic: string) => events(topic) };
}

export function makeSubscriptionsPlugin(): GraphileConfig.Plugin {
  return extendSchema((build) => {
    const { full_scans: fullScans, scan_results: results } = build.input.pgRegistry.pgResources;
    if (!fullScans || !results) throw new Error('dsx.full_scans / dsx.scan_results are not in the GraphQL registry');
    return {
      typeDefs: gql`
        """One event of a full scan's progress (a snapshot of dsx.full_scan_progress)."""
        type FullScanProgressEvent {
          """initial (the state when you subscribed), progress, status, or finished (the last one)."""
          event: String!
          fullScanId: BigInt!
          status: String!
          discovered: Float!
          finalized: Float!
          enumerationExhausted: Boolean!
          """finalized / discovered in percent; null until enumeration is exhausted (the total is not known before)."""
          percentFinalized: Float
          objectsPerS: Float
          """Seconds left at the current rate, while running and only once enumeration is exhausted."""
          etaS: Float
          """Finalized objects per outcome: clean, malicious, unable_to_scan, unsupported_type, fetch_failed, timeout, policy_blocked, canceled."""
          outcomes: JSON!
          cancelMode: String
          error: String
          startedAt: String
          finishedAt: String
          """The last listing error while listing keeps failing (cleared when a page is recorded), its attempt and the next try."""
          enumerationError: String
          enumerationAttempt: Int
          enumerationMaxAttempts: Int
          enumerationRetryAt: String
          """The scanner as the live workers see it: ok, unavailable or unauthorized (scans wait while it is not ok), since when, and why."""
          scannerState: String
          scannerSince: String
          scannerError: String
          """Entries enumeration met and did not scan (listed in allSkippedEntries)."""
          skipped: Float!
          """Skipped entries per reason: symlink, special_file, unreadable_directory, directory_marker, internal."""
          skippedReasons: JSON!
          """Set when directories could not be read: how many, the first three by name, "(not scanned)"."""
          enumerationWarning: String
          fullScan: FullScan
        }
        extend type Subscription {
          """
          Progress of one full scan: its current state first, then on every status change and at most
          every 200 ms while objects are discovered or finalized; the stream ends after the event showing
          the scan finished (completed, failed, or canceled and drained).
          """
          fullScanProgress(fullScanId: BigInt!): FullScanProgressEvent
          """Results of a scope as they are finalized (optionally only one outcome, e.g. "malicious")."""
          scanResults(scopeId: BigInt!, outcome: String): ScanResult
        }
      `,
      objects: {
        FullScanProgressEvent: {
          plans: {
            fullScan($e: Step) {
              return fullScans.get({ id: access($e, 'fullScanId') });
            },
          },
        },
        Subscription: {
          plans: {
            fullScanProgress: {
              subscribePlan(_$root: Step, fieldArgs: any) {
                const $ctx = context();
                const $sub = lambda([$ctx.get('pgSubscriber'), $ctx.get('withPgClient'), $ctx.get('pgSettings')], ([s, withPgClient, settings]) =>
                  subscriberOf((id) =>
                    fullScanEvents(s as unknown as Subscriber, async () => {
                      return (await (withPgClient as unknown as WithPgClient)(settings, (c) => fullScanProgressEventGet(fromQueryConfigClient(c), id))) as ProgressRow | undefined;
                    }, id),
                  ),
                );
                return listen($sub, lambda(fieldArgs.getRaw('fullScanId'), (id) => rowIdOf('fullScanId', id)));
              },
              plan($event: Step) {
                return $event;
              },
            },
            scanResults: {
              subscribePlan(_$root: Step, fieldArgs: any) {
                const $outcome = fieldArgs.getRaw('outcome');
                const $sub = lambda([context().get('pgSubscriber'), $outcome], ([s, outcome]) =>
                  subscriberOf((topic) => scanResultEvents(s as unknown as Subscriber, topic, (outcome as string | null) ?? null)),
                );
                return listen($sub, lambda(fieldArgs.getRaw('scopeId'), (id) => rowIdOf('scopeId', id)));
              },
              plan($event: Step) {
                return results.get({ id: access($event, 'id') });
              },
            },
          },
        },
      },
    };
  }, 'DsxSubscriptionsPlugin');
}
