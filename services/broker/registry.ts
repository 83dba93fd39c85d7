/**
 * The set of connected agents: at most one live session per agent id. A newer
 * connection claiming an id replaces the older one, which is closed with a
 * reason.
 *
 * @module
 */

/** What the registry needs from a session. */
export interface RegisteredSession {
  /** The agent id from the session's Hello. */
  readonly agentId: string;
  /** Peer address of the connection. */
  readonly peer: string;
  /** Sends Close{reason} and ends the stream. */
  close(reason: string): void;
}

/** Connected agents by id. */
export class Registry<S extends RegisteredSession = RegisteredSession> {
  #byId = new Map<string, S>();

  /**
   * Registers `session` for its agent id. An older session with the same id
   * is closed with a reason naming the newer connection and returned.
   */
  register(session: S): S | undefined {
    const older = this.#byId.get(session.agentId);
    this.#byId.set(session.agentId, session);
    if (older && older !== session) {
      older.close(
        `replaced by a newer connection for agent ${session.agentId} from ${session.peer}`,
      );
      return older;
    }
    return undefined;
  }

  /** Removes `session` if it is still the current one for its id; true when removed. */
  unregister(session: S): boolean {
    if (this.#byId.get(session.agentId) !== session) return false;
    this.#byId.delete(session.agentId);
    return true;
  }

  /** The current session of an agent. */
  get(agentId: string): S | undefined {
    return this.#byId.get(agentId);
  }

  /** Every current session, sorted by agent id. */
  list(): S[] {
    return [...this.#byId.values()].sort((a, b) => a.agentId.localeCompare(b.agentId));
  }

  /** Number of connected agents. */
  get size(): number {
    return this.#byId.size;
  }
}
