/**
 * Subprocess used by the Bus contract suite (see bus_contract.ts) to act as
 * another process on the same bus. Not part of the product.
 *
 * Usage: `deno run <permissions> bus_contract_child.ts <mode> <settings-json> ...`
 * - `consume-hang <topic> <group>`: subscribes from the beginning, prints
 *   `received <value>` for the first message and never finishes handling it
 *   (the parent kills the process: a consumer crash before the commit).
 * - `publish <topic> <name> <count> <batch>`: publishes `count` messages
 *   `<name>-<i>` keyed `<name>` in batches of `batch`, then prints `published`.
 *
 * @module
 */
import { openBus } from "../../services/bus/mod.ts";
import type { BusSettings } from "../../services/bus/types.ts";

async function main(args: string[]): Promise<void> {
  const [mode, settingsJson, ...rest] = args;
  const settings = JSON.parse(settingsJson ?? "null") as BusSettings;
  const bus = await openBus(settings);
  try {
    if (mode === "consume-hang") {
      const [topic, group] = rest;
      let stuck: Promise<never> | undefined;
      await bus.subscribe({
        topics: [topic],
        group,
        fromBeginning: true,
        handler: (message) => {
          console.log(`received ${message.value}`);
          // Keeps the process alive and never lets the handler finish.
          setInterval(() => {}, 60_000);
          stuck ??= new Promise<never>(() => {});
          return stuck;
        },
      });
      await new Promise<never>(() => setInterval(() => {}, 60_000));
    } else if (mode === "publish") {
      const [topic, name, countText, batchText] = rest;
      const count = Number(countText);
      const batch = Number(batchText);
      for (let i = 0; i < count; i += batch) {
        const messages = [];
        for (let j = i; j < Math.min(count, i + batch); j++) {
          messages.push({ key: name, value: `${name}-${j}` });
        }
        await bus.publish(topic, messages);
      }
      console.log("published");
    } else {
      throw new Error(`bus_contract_child: unknown mode ${JSON.stringify(mode)}`);
    }
  } finally {
    await bus.close();
  }
}

if (import.meta.main) await main(Deno.args);
