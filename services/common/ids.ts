/** Rules for agent ids shared by the agent, broker and consoles. @module */

/** Agent ids: 1 to 128 of letters, digits, `.`, `_`, `-`. `all` is reserved for "every agent". */
export const AGENT_ID_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * Returns an error message when `id` is not a valid agent id, otherwise undefined.
 * @param id the candidate agent id
 */
export function checkAgentId(id: string): string | undefined {
  if (!AGENT_ID_PATTERN.test(id)) {
    return `agent id ${
      JSON.stringify(id)
    } is not valid: expected 1 to 128 characters of letters, digits, '.', '_' or '-'`;
  }
  if (id === "all") return `agent id "all" is reserved: it means every agent`;
  return undefined;
}
