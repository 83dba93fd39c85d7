/** The agent's software version, sent in Hello and the heartbeat. @module */

/** Agent version. */
export const AGENT_VERSION = "1.0.0";
