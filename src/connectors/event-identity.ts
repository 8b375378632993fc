/**
 * The identity step of storage events, per integration: the object name an event carries (an S3 key,
 * URL-decoded; an Azure blob name) becomes the identity the connector lists and reads (the name relative
 * to the integration's prefix, verbatim), and events about objects that are not the integration's to
 * scan (outside its prefix, folder markers, its own quarantine copies and probe objects) are skipped,
 * so our own remediation never triggers rescans. Built from the settings alone: no client, no request,
 * so the API server's intake can use it. Other kinds keep the core's canonical paths.
 */
import { BlobNaming } from './azure-blob/naming.ts';
import { parseAzureBlobSettings } from './azure-blob/settings.ts';
import { S3KeyLayout } from './s3/layout.ts';
import { parseS3Settings } from './s3/settings.ts';

/** The identity of an event's object name; null to skip the event. */
export type EventIdentity = (name: string) => string | null;

/**
 * The identity step of an integration's events, or undefined for kinds that take the core's canonical
 * relative paths (filesystem, generic). Settings the connector would refuse throw its configuration
 * error (one line naming the field).
 */
export function eventIdentityFor(integration: { kind: string; settings: Record<string, unknown> }): EventIdentity | undefined {
  if (integration.kind === 's3') {
    const layout = new S3KeyLayout(parseS3Settings(integration.settings));
    return (name) => layout.identityOfKey(name);
  }
  if (integration.kind === 'azure_blob') {
    const naming = new BlobNaming(parseAzureBlobSettings(integration.settings));
    return (name) => naming.identityOfBlob(name);
  }
  return undefined;
}
