/**
 * Errors of the URL plugin loader. Every message names the plugin and, where
 * it applies, the plugin URL and the module concerned.
 *
 * @module
 */

/** Base class: something went wrong with one URL plugin. */
export class PluginError extends Error {
  /**
   * @param plugin the plugin name
   * @param message full message (already naming the plugin)
   */
  constructor(readonly plugin: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PluginError";
  }
}

/** Pinning failed: the graph could not be resolved or uses something unsupported. */
export class PinError extends PluginError {
  /** @param url the plugin's entry URL */
  constructor(plugin: string, readonly url: string, message: string, options?: ErrorOptions) {
    super(plugin, `plugin "${plugin}" (${url}): ${message}`, options);
    this.name = "PinError";
  }
}

/** Re-pinning the same URL and version found different bytes (refused unless forced). */
export class PinTamperError extends PluginError {
  /**
   * @param url entry URL
   * @param version the version pinned before with other bytes
   * @param changed modules whose bytes differ (or that appeared/disappeared)
   */
  constructor(
    plugin: string,
    readonly url: string,
    readonly version: string,
    readonly changed: string[],
  ) {
    super(
      plugin,
      `plugin "${plugin}" ${url} version ${version}: the published bytes changed since it was ` +
        `pinned (${changed.join(", ")}); refusing to re-pin the same version. Publish a new ` +
        `version, or re-pin explicitly with --force if the change is trusted`,
    );
    this.name = "PinTamperError";
  }
}

/** A module could not be fetched. */
export class PluginFetchError extends PluginError {
  /**
   * @param url the plugin's entry URL
   * @param module the module URL that failed
   */
  constructor(
    plugin: string,
    readonly url: string,
    readonly module: string,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(plugin, `plugin "${plugin}" (${url}): cannot fetch module ${module}: ${reason}`, options);
    this.name = "PluginFetchError";
  }
}

/** The bytes of a module do not match its pinned integrity; nothing of the plugin ran. */
export class PluginIntegrityError extends PluginError {
  /**
   * @param url the plugin's entry URL
   * @param module the module URL whose bytes differ
   * @param expected pinned integrity
   * @param actual integrity of the bytes received
   */
  constructor(
    plugin: string,
    readonly url: string,
    readonly module: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(
      plugin,
      `plugin "${plugin}" (${url}): integrity check failed for module ${module}: pinned ` +
        `${expected}, received ${actual}; the plugin was not run`,
    );
    this.name = "PluginIntegrityError";
  }
}

/** The plugin used a permission it was not granted (or the agent cannot grant it). */
export class PluginPermissionError extends PluginError {
  /**
   * @param permission `net`, `read`, `env`, `write`, `run`, `sys`, `ffi` or `import`
   * @param target what it tried to reach, e.g. `/etc/hostname`
   */
  constructor(
    plugin: string,
    readonly permission: string,
    readonly target: string,
    message: string,
  ) {
    super(plugin, message);
    this.name = "PluginPermissionError";
  }
}

/** A call into the plugin's Worker did not answer within its time budget. */
export class PluginTimeoutError extends PluginError {
  /**
   * @param operation `load`, `initialize`, `run` or `finalize`
   * @param timeoutMs the budget
   */
  constructor(plugin: string, readonly operation: string, readonly timeoutMs: number) {
    super(
      plugin,
      `plugin "${plugin}": ${operation}() did not answer within ${timeoutMs} ms; its worker was ` +
        `stopped and will be restarted on the next call`,
    );
    this.name = "PluginTimeoutError";
  }
}

/** The plugin threw, returned something invalid, or its Worker failed. */
export class PluginRuntimeError extends PluginError {
  /** @param operation `load`, `initialize`, `run`, `finalize` or `worker` */
  constructor(plugin: string, readonly operation: string, message: string) {
    super(plugin, `plugin "${plugin}": ${operation}() failed: ${message}`);
    this.name = "PluginRuntimeError";
  }
}
