/**
 * Optional file sink: every published sample appended as one JSON line (the
 * seed's `result.txt`). Writes are queued in order; a write error is logged
 * once per burst and never blocks acknowledgements.
 *
 * @module
 */
import { dirname } from "node:path";
import { errorMessage, type Logger } from "../common/log.ts";
import type { DataMessage } from "../common/messages.ts";

/** An open JSON-lines file. */
export class DataSink {
  #file: Deno.FsFile;
  #chain: Promise<void> = Promise.resolve();
  #failing = false;
  #closed = false;

  private constructor(readonly path: string, file: Deno.FsFile, private log: Logger) {
    this.#file = file;
  }

  /** Opens (creating it and its directory if needed) `path` for appending. */
  static async open(path: string, log: Logger): Promise<DataSink> {
    try {
      await Deno.mkdir(dirname(path), { recursive: true });
      const file = await Deno.open(path, { append: true, create: true, write: true });
      return new DataSink(path, file, log);
    } catch (error) {
      throw new Error(`broker.sink: cannot open ${path} for appending: ${errorMessage(error)}`, {
        cause: error,
      });
    }
  }

  /** Queues the messages for writing, one JSON object per line. */
  write(messages: DataMessage[]): void {
    if (this.#closed || messages.length === 0) return;
    const text = messages.map((m) => JSON.stringify(m)).join("\n") + "\n";
    const bytes = new TextEncoder().encode(text);
    this.#chain = this.#chain.then(async () => {
      try {
        let written = 0;
        while (written < bytes.length) written += await this.#file.write(bytes.subarray(written));
        if (this.#failing) this.log.info(`sink ${this.path} is writable again`);
        this.#failing = false;
      } catch (error) {
        if (!this.#failing) {
          this.log.error(`sink ${this.path}: write failed: ${errorMessage(error)}`);
        }
        this.#failing = true;
      }
    });
  }

  /** Waits for queued writes and closes the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#chain;
    this.#file.close();
  }
}
