/**
 * Feeds what the analysis application consumes into the fleet view and the
 * history: every sample and every alert transition.
 *
 * @module
 */
import type { Analysis } from "./analysis.ts";
import type { FleetState } from "./fleet.ts";
import type { HistoryStore } from "./history.ts";

/**
 * Records every sample and alert of `analysis` into `fleet` and `history`.
 * Register it before any reader of `fleet` listens to the same events.
 * Returns a function that stops recording.
 */
export function recordEvents(
  analysis: Analysis,
  fleet: FleetState,
  history: HistoryStore,
): () => void {
  return analysis.onEvent((event) => {
    if (event.type === "data") {
      fleet.applySample(event.sample);
      history.append(event.sample);
    } else if (event.type === "alert") {
      fleet.applyAlert(event.alert);
      history.recordAlert(event.alert);
    }
  });
}
