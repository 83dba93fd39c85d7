/**
 * Splits a byte stream (a child's stdout or stderr) into text lines.
 *
 * @module
 */

/**
 * Calls `onLine` with each `\n`-terminated line of `stream` (UTF-8, without
 * the `\n`), in order, and at the end with the unterminated rest when not
 * empty: also when the stream fails, whose error is then thrown.
 */
export async function forEachLine(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let buffer = "";
  try {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      let newline = buffer.indexOf("\n");
      while (newline >= 0) {
        onLine(buffer.slice(0, newline));
        buffer = buffer.slice(newline + 1);
        newline = buffer.indexOf("\n");
      }
    }
  } finally {
    if (buffer !== "") onLine(buffer);
  }
}
