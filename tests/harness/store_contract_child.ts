/**
 * Subprocess used by the Store contract suite (see store_contract.ts) to act as
 * another process on the same store. Not part of the product.
 *
 * Usage: `deno run <permissions> store_contract_child.ts <mode> <settings-json> <open-options-json> ...`
 * (`<open-options-json>`: the second argument of `openStore`, e.g. `{"etcd":{"client":"http"}}`)
 * - `put <prefix> <count>`: puts `<prefix>k-<i>` = `v-<i>` for i < count, one
 *   after the other, then prints `done <last revision>`.
 * - `lease <key> <ttl>`: grants a lease, puts `<key>` = `alive` through it and
 *   prints `ready <lease id>`; prints `lost <new lease id>` whenever the lease
 *   was lost and re-established; runs until killed (SIGTERM closes the store).
 *
 * @module
 */
import { openStore, type OpenStoreOptions } from "../../services/store/mod.ts";
import type { StoreSettings } from "../../services/store/types.ts";

async function main(args: string[]): Promise<void> {
  const [mode, settingsJson, optionsJson, ...rest] = args;
  const settings = JSON.parse(settingsJson ?? "null") as StoreSettings;
  const options = JSON.parse(optionsJson ?? "{}") as OpenStoreOptions;
  const store = await openStore(settings, options);
  try {
    if (mode === "put") {
      const [prefix, countText] = rest;
      let revision = 0;
      for (let i = 0; i < Number(countText); i++) {
        revision = await store.put(`${prefix}k-${i}`, `v-${i}`);
      }
      console.log(`done ${revision}`);
    } else if (mode === "lease") {
      const [key, ttlText] = rest;
      const lease = await store.lease(Number(ttlText));
      lease.onLost(() => console.log(`lost ${lease.id}`));
      await lease.put(key, "alive");
      console.log(`ready ${lease.id}`);
      await new Promise<void>((resolve) => {
        Deno.addSignalListener("SIGTERM", resolve);
      });
    } else {
      throw new Error(`store_contract_child: unknown mode ${JSON.stringify(mode)}`);
    }
  } finally {
    await store.close();
  }
}

if (import.meta.main) {
  await main(Deno.args);
  Deno.exit(0);
}
