/** The filesystem connector's public entry: the connector, its quarantine settings, and path helpers. */
export { FilesystemConnector, type FilesystemConnectorOptions } from './connector.ts';
export { relativeInside } from './paths.ts';
export { defaultQuarantineDir, quarantineDirProblem, quarantineOtherRootsProblem, type OtherRoot } from './quarantine-area.ts';
export { MIN_SKIPPED_PER_PAGE } from './walk.ts';
