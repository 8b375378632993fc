/**
 * The DSXA response JSON, with the fields of Deep Instinct's published SDKs. The schema is loose: extra
 * fields a newer DSXA may add are kept, not rejected. Only `verdict` is required, because some answers
 * (a 400 "Invalid protected entity", say) carry nothing but a verdict and its details.
 */
import { z } from 'zod';

/** The verdict strings DSXA is known to return. The schema accepts any string; normalization decides. */
export const VERDICTS = ['Benign', 'Malicious', 'Unknown', 'Unsupported File Type', 'Not Scanned', 'Non Compliant', 'Scanning'] as const;

/** One of the known DSXA verdicts. */
export type Verdict = (typeof VERDICTS)[number];

/** `verdict_details`: what DSXA says about its verdict. */
export const verdictDetailsSchema = z.looseObject({
  event_description: z.string().nullish(),
  reason: z.string().nullish(),
  threat_type: z.string().nullish(),
});

/** `file_info`: what DSXA learned about the scanned bytes. */
export const fileInfoSchema = z.looseObject({
  file_type: z.string().nullish(),
  file_size_in_bytes: z.number().nullish(),
  file_hash: z.string().nullish(),
  container_hash: z.string().nullish(),
  additional_office_data: z.unknown().optional(),
});

/** A DSXA scan response (`/scan/binary/v2`, `/scan/base64/v2`, ...). */
export const dsxaResponseSchema = z.looseObject({
  scan_guid: z.string().nullish(),
  verdict: z.string(),
  verdict_details: verdictDetailsSchema.nullish(),
  file_info: fileInfoSchema.nullish(),
  protected_entity: z.number().nullish(),
  scan_duration_in_microseconds: z.number().nullish(),
  container_files_scanned: z.number().nullish(),
  container_files_scanned_size: z.number().nullish(),
  'X-Custom-Metadata': z.string().nullish(),
  last_update_time: z.string().nullish(),
});

/** A parsed DSXA scan response. */
export type DsxaResponse = z.infer<typeof dsxaResponseSchema>;
