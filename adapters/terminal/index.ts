export { validateEvent, eventsSchema, EVENT_TYPES } from './events.js';
export type {
  ProgressEvent,
  RunStartedEvent,
  StepStartedEvent,
  StepCommandEvent,
  StepFinishedEvent,
  RunStateEvent,
  RunFinishedEvent,
  WarningEvent,
  ValidationResult,
} from './events.js';
export { jsonReporter, plainReporter, liveReporter, plainLine, renderLiveFrame, foldLiveState, emptyLiveState } from './reporters.js';
export type { Reporter, Write, ReporterOptions, LiveReporterOptions, LiveStream, LiveState } from './reporters.js';
export { renderStatus, renderRuns, renderLog } from './status.js';
export type { StatusView, StatusNode, CellState, RenderOptions } from './status.js';
export { useColor, palette, formatDuration, formatClock, formatDateTime, stripAnsi } from './format.js';
