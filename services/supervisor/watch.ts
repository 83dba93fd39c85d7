/**
 * Watches one file for edits: `Deno.watchFs` on its directory (editors
 * that save by renaming a new file over the old one are seen too), events
 * debounced, the callback called with the new text only when it changed.
 *
 * @module
 */
import { basename, dirname, resolve } from "node:path";

/** A running file watch. */
export interface FileWatch {
  /** Stops watching; no callback runs after the returned promise resolves. */
  close(): Promise<void>;
}

/** Options of {@linkcode watchFile}. */
export interface WatchFileOptions {
  /** Quiet period after the last event before reading the file (ms). Default 300. */
  debounceMs?: number;
  /** The text the caller already has (no callback until the file differs). */
  initialText?: string;
  /** Called when the file cannot be read (deleted, permission). */
  onError?: (error: Error) => void;
}

/**
 * Calls `onChange(text)` after `path` changed (one call per quiet period,
 * callbacks never overlap).
 */
export function watchFile(
  path: string,
  onChange: (text: string) => void | Promise<void>,
  options: WatchFileOptions = {},
): FileWatch {
  const file = resolve(path);
  const name = basename(file);
  const debounceMs = options.debounceMs ?? 300;
  const watcher = Deno.watchFs(dirname(file), { recursive: false });
  let last = options.initialText;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  let running: Promise<void> = Promise.resolve();

  const check = () => {
    timer = undefined;
    running = running.then(async () => {
      if (closed) return;
      let text: string;
      try {
        text = await Deno.readTextFile(file);
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return; // mid-rename: the next event follows
        options.onError?.(error as Error);
        return;
      }
      if (text === last || closed) return;
      last = text;
      try {
        await onChange(text);
      } catch (error) {
        options.onError?.(error as Error);
      }
    });
  };

  const loop = (async () => {
    try {
      for await (const event of watcher) {
        if (!event.paths.some((p) => basename(p) === name)) continue;
        if (timer !== undefined) clearTimeout(timer);
        timer = setTimeout(check, debounceMs);
      }
    } catch (error) {
      if (!closed) options.onError?.(error as Error);
    }
  })();

  return {
    async close() {
      if (closed) return;
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      try {
        watcher.close();
      } catch { /* already closed */ }
      await loop;
      await running;
    },
  };
}
