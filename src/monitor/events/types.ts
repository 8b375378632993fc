/**
 * The shapes every event parser returns.
 *
 * Glossary: a *body* is one decoded JSON request body; a *provider format* is how one sender shapes it
 * (S3 records, an SNS envelope, EventBridge, Event Grid / CloudEvents, the generic form); an *event* is
 * one creation, change or deletion of one object, normalized to IncomingEvent; a *handshake* is a body
 * that asks for an answer instead of carrying events (Event Grid validation, SNS subscription, the S3
 * test event).
 */
import type { IncomingEvent } from '../../db/sql/monitor.ts';

/** How the events of a body arrived (stored in dsx.monitor_events.source). */
export type EventSource = 's3' | 'sns' | 'eventbridge' | 'eventgrid' | 'generic';

/** What a body parses to: events, or a handshake to answer. */
export type ParsedBody =
  | { kind: 'events'; source: EventSource; events: IncomingEvent[]; skipped: number }
  | { kind: 'eventgrid-validation'; validationCode: string }
  | { kind: 'sns-subscription'; type: string; topicArn: string; subscribeUrl: string | null }
  | { kind: 's3-test' };

/** Events of one provider format and how many of its records were of kinds we skip. */
export interface ParsedEvents {
  events: IncomingEvent[];
  skipped: number;
}

/**
 * The identity step: turns the object name an event carries (an S3 key after URL decoding, an Azure
 * blob name, a generic objectIdentity) into the object identity recorded. `where` names the field for
 * error messages. Refuses with EventFormatError; null skips the event (an object that is not the
 * integration's to scan: outside its prefix, its own quarantine copies and probes), counted in
 * `skipped`; whatever else it returns is checked again (not empty, at most MAX_IDENTITY_BYTES, storable
 * by PostgreSQL) before it is recorded.
 */
export type IdentityOf = (raw: string, where: string) => string | null;

/** Options of parseEventBody. */
export interface ParseOptions {
  /** The identity step; default canonicalIdentity (a canonical relative path, never outside the root). */
  identityOf?: IdentityOf;
}
