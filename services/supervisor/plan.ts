/**
 * What the supervisor takes from a resolved monitor.yaml, and the
 * difference between two versions of it: which `agents:` entries to write
 * or delete in the store, whether plugins must be re-pinned, and which
 * services must restart.
 *
 * @module
 */
import type { DeploymentSettings, ServiceName } from "./commands.ts";

/** The supervisor's view of one valid monitor.yaml. */
export interface SupervisorPlan {
  /** Everything the command lines depend on. */
  deployment: DeploymentSettings;
  /** `agents:`: agent id -> configuration written as JSON to `<prefix>/config/<id>`. */
  agents: Record<string, unknown>;
  /** `plugins:` as written (name -> declaration); compared to decide re-pinning. */
  plugins: Record<string, unknown>;
  /**
   * Settings each service depends on, compared between versions: the
   * service's own section and whatever else of the file it reads.
   */
  serviceInputs: Record<ServiceName, unknown>;
  /** Settings every service depends on (`store`, `bus`, `state_dir`, ...). */
  sharedInputs: unknown;
}

/** The difference between two plans. */
export interface PlanDiff {
  /** Agent ids whose configuration is new or changed (written to the store). */
  agentsPut: string[];
  /** Agent ids removed from `agents:` (deleted from the store). */
  agentsDeleted: string[];
  /** `plugins:` changed: pin again. */
  pluginsChanged: boolean;
  /** Settings every service depends on changed: restart everything. */
  sharedChanged: boolean;
  /** Services whose own settings changed (restart only those). */
  services: ServiceName[];
}

/** Stable JSON: object keys sorted, so that reordering keys is no change. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]]));
    }
    return v;
  });
}

function same(a: unknown, b: unknown): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

/** Compares the plan in force with the edited one. */
export function diffPlans(before: SupervisorPlan, after: SupervisorPlan): PlanDiff {
  const agentsPut = Object.keys(after.agents).filter((id) =>
    !(id in before.agents) || !same(before.agents[id], after.agents[id])
  ).sort();
  const agentsDeleted = Object.keys(before.agents).filter((id) => !(id in after.agents)).sort();
  const services = (Object.keys(after.serviceInputs) as ServiceName[]).filter((name) =>
    !same(before.serviceInputs[name], after.serviceInputs[name])
  );
  return {
    agentsPut,
    agentsDeleted,
    pluginsChanged: !same(before.plugins, after.plugins),
    sharedChanged: !same(before.sharedInputs, after.sharedInputs),
    services,
  };
}

/** True when the diff changes nothing. */
export function isEmptyDiff(diff: PlanDiff): boolean {
  return diff.agentsPut.length === 0 && diff.agentsDeleted.length === 0 &&
    !diff.pluginsChanged && !diff.sharedChanged && diff.services.length === 0;
}
