/**
 * Outcome normalization: every verdict, every reason pattern and every failure kind maps to the exact
 * outcome and reason, and the raw reason is kept.
 */
import t from 'tap';
import type { DsxaResponse } from '../src/dsxa/types.ts';
import {
  FAILURE_TABLE,
  NORMALIZATION_VERSION,
  normalizeFailure,
  normalizeVerdict,
  OUTCOMES,
  REASON_PATTERNS,
  VERDICT_TABLE,
  type Normalized,
  type ScanFailure,
} from '../src/pipeline/outcomes.ts';

const verdict = (v: string, details: DsxaResponse['verdict_details'] = {}): DsxaResponse => ({
  scan_guid: '0123456789abcdef0123456789abcdef',
  verdict: v,
  verdict_details: details,
});

t.test('constants', async (t) => {
  t.equal(NORMALIZATION_VERSION, 1);
  t.same([...OUTCOMES].sort(), ['canceled', 'clean', 'fetch_failed', 'malicious', 'policy_blocked', 'timeout', 'unable_to_scan', 'unsupported_type']);
  for (const rule of Object.values(VERDICT_TABLE)) t.ok(OUTCOMES.includes(rule.outcome), `${rule.outcome} is an outcome`);
  for (const byKind of Object.values(FAILURE_TABLE)) {
    for (const [outcome] of Object.values(byKind) as (readonly [string, string])[]) t.ok(OUTCOMES.includes(outcome as never), `${outcome} is an outcome`);
  }
});

t.test('verdicts', async (t) => {
  const cases: [name: string, status: number, response: DsxaResponse, expected: Normalized][] = [
    ['Benign', 200, verdict('Benign', { event_description: 'File identified as benign' }), { outcome: 'clean', reason: null, rawReason: null }],
    [
      'Malicious with threat type',
      200,
      verdict('Malicious', { event_description: 'File identified as malicious', threat_type: 'RANSOMWARE' }),
      { outcome: 'malicious', reason: 'ransomware', rawReason: null },
    ],
    ['Malicious VIRUS', 200, verdict('Malicious', { threat_type: 'VIRUS' }), { outcome: 'malicious', reason: 'virus', rawReason: null }],
    ['Malicious without details', 200, { verdict: 'Malicious' }, { outcome: 'malicious', reason: null, rawReason: null }],
    ['Malicious with null details', 200, { verdict: 'Malicious', verdict_details: null }, { outcome: 'malicious', reason: null, rawReason: null }],
    ['Unsupported File Type', 200, verdict('Unsupported File Type'), { outcome: 'unsupported_type', reason: null, rawReason: null }],
    [
      'Not Scanned encrypted',
      200,
      verdict('Not Scanned', { reason: 'encrypted file' }),
      { outcome: 'unable_to_scan', reason: 'encrypted_file', rawReason: 'encrypted file' },
    ],
    [
      'Unknown with a reason',
      200,
      verdict('Unknown', { reason: 'File Size Too Large' }),
      { outcome: 'unable_to_scan', reason: 'file_too_large', rawReason: 'File Size Too Large' },
    ],
    [
      'Non Compliant with a reason',
      200,
      verdict('Non Compliant', { reason: 'Scan error' }),
      { outcome: 'unable_to_scan', reason: 'scan_error', rawReason: 'Scan error' },
    ],
    ['Not Scanned without reason', 200, verdict('Not Scanned'), { outcome: 'unable_to_scan', reason: 'no_reason', rawReason: null }],
    ['Not Scanned with empty reason', 200, verdict('Not Scanned', { reason: '' }), { outcome: 'unable_to_scan', reason: 'no_reason', rawReason: '' }],
    ['Not Scanned without details', 200, { verdict: 'Not Scanned' }, { outcome: 'unable_to_scan', reason: 'no_reason', rawReason: null }],
    ['Unknown without reason', 200, verdict('Unknown'), { outcome: 'unable_to_scan', reason: 'no_reason', rawReason: null }],
    ['Non Compliant without reason', 200, verdict('Non Compliant'), { outcome: 'unable_to_scan', reason: 'no_reason', rawReason: null }],
    ['Scanning', 200, verdict('Scanning'), { outcome: 'unable_to_scan', reason: 'scan_pending', rawReason: null }],
    [
      '400 Invalid protected entity',
      400,
      { verdict: 'Not Scanned', verdict_details: { reason: 'Invalid protected entity' } },
      { outcome: 'unable_to_scan', reason: 'invalid_protected_entity', rawReason: 'Invalid protected entity' },
    ],
    ['unknown verdict', 200, verdict('Quarantined'), { outcome: 'unable_to_scan', reason: 'unknown_verdict', rawReason: 'Quarantined' }],
    [
      'unknown verdict with a reason',
      200,
      verdict('Suspicious', { reason: 'heuristics' }),
      { outcome: 'unable_to_scan', reason: 'unknown_verdict', rawReason: 'heuristics' },
    ],
    ['verdict case matters', 200, verdict('benign'), { outcome: 'unable_to_scan', reason: 'unknown_verdict', rawReason: 'benign' }],
  ];
  for (const [name, status, response, expected] of cases) t.same(normalizeVerdict(status, response), expected, name);
  for (const v of Object.keys(VERDICT_TABLE)) t.ok(cases.some(([, , r]) => r.verdict === v), `verdict ${v} has a case`);
});

t.test('Not Scanned reasons', async (t) => {
  const cases: [raw: string, reason: string][] = [
    ['encrypted file', 'encrypted_file'],
    ['Encrypted File', 'encrypted_file'],
    ['password protected archive', 'encrypted_file'],
    ['File Size Too Large', 'file_too_large'],
    ['file too large', 'file_too_large'],
    ['File type not supported', 'file_type_not_supported'],
    ['Unsupported file type', 'file_type_not_supported'],
    ['Corrupted file', 'corrupted_file'],
    ['file is corrupt', 'corrupted_file'],
    ['Malformed PE header', 'corrupted_file'],
    ['Archive nesting level exceeded', 'archive_nesting_limit'],
    ['Max nested depth reached', 'archive_nesting_limit'],
    ['Archive too large', 'archive_too_large'],
    ['Archive file size too large', 'archive_too_large'],
    ['Zip bomb detected', 'zip_bomb'],
    ['zipbomb', 'zip_bomb'],
    ['Scan error', 'scan_error'],
    ['Scanning error: engine crashed', 'scan_error'],
    ['System is initializing', 'system_initializing'],
    ['Engine initialization in progress', 'system_initializing'],
    ['Invalid protected entity', 'invalid_protected_entity'],
    ['Other: 17', 'other'],
    ['other:E42', 'other'],
    ['something nobody has seen', 'unknown_reason'],
  ];
  for (const [raw, reason] of cases) {
    t.same(normalizeVerdict(200, verdict('Not Scanned', { reason: raw })), { outcome: 'unable_to_scan', reason, rawReason: raw }, raw);
  }
  for (const [, reason] of REASON_PATTERNS) t.ok(cases.some(([, r]) => r === reason), `pattern for ${reason} has a case`);
});

t.test('failures', async (t) => {
  const cases: [failure: Omit<ScanFailure, 'message'>, outcome: string, reason: string][] = [
    [{ stage: 'fetch', kind: 'not_found' }, 'fetch_failed', 'not_found'],
    [{ stage: 'fetch', kind: 'permission' }, 'fetch_failed', 'permission'],
    [{ stage: 'fetch', kind: 'escape' }, 'fetch_failed', 'outside_scope'],
    [{ stage: 'fetch', kind: 'transient' }, 'fetch_failed', 'transient_exhausted'],
    [{ stage: 'fetch', kind: 'throttled' }, 'fetch_failed', 'throttled_exhausted'],
    [{ stage: 'fetch', kind: 'configuration' }, 'fetch_failed', 'connector_misconfigured'],
    [{ stage: 'fetch', kind: 'invalid' }, 'fetch_failed', 'invalid_identity'],
    [{ stage: 'fetch', kind: 'unavailable' }, 'fetch_failed', 'connector_unavailable'],
    [{ stage: 'scanner', kind: 'timeout' }, 'timeout', 'scanner_timeout'],
    [{ stage: 'scanner', kind: 'unavailable' }, 'unable_to_scan', 'scanner_unavailable'],
    [{ stage: 'scanner', kind: 'auth' }, 'unable_to_scan', 'scanner_auth_failed'],
    [{ stage: 'scanner', kind: 'bad_request' }, 'unable_to_scan', 'scanner_rejected'],
    [{ stage: 'scanner', kind: 'protocol' }, 'unable_to_scan', 'scan_error'],
    [{ stage: 'policy', kind: 'size_cap' }, 'policy_blocked', 'size_cap'],
    [{ stage: 'policy', kind: 'excluded_type' }, 'policy_blocked', 'excluded_type'],
    [{ stage: 'cancel', kind: 'interrupted' }, 'canceled', 'interrupted'],
  ];
  for (const [f, outcome, reason] of cases) {
    const message = `${f.stage} ${f.kind}: details here`;
    t.same(normalizeFailure({ ...f, message } as ScanFailure), { outcome, reason, rawReason: message }, `${f.stage}:${f.kind}`);
  }
  for (const [stage, byKind] of Object.entries(FAILURE_TABLE)) {
    for (const kind of Object.keys(byKind)) t.ok(cases.some(([f]) => f.stage === stage && f.kind === kind), `${stage}:${kind} has a case`);
  }
  // A payload from another version can carry a kind this one does not know.
  t.same(normalizeFailure({ stage: 'fetch', kind: 'vanished', message: 'gone' } as unknown as ScanFailure), {
    outcome: 'unable_to_scan',
    reason: 'unknown_failure',
    rawReason: 'gone',
  });
  t.same(normalizeFailure({ stage: 'fetch', kind: 'toString', message: 'm' } as unknown as ScanFailure).reason, 'unknown_failure');
});
