/**
 * Loads the etcd modules only when etcd is used. The etcd3 package reads its `.proto` files from
 * its own folder when imported, which a `deno bundle` file cannot provide: loading it on demand
 * keeps bundled entries working with built-in discovery, and fails etcd mode with one clear
 * message.
 *
 * @module
 */

/** The etcd side of discovery, loaded on demand. */
export interface EtcdModules {
  createEtcdClient: typeof import("./etcd_client.ts").createEtcdClient;
  EtcdDiscovery: typeof import("./etcd_discovery.ts").EtcdDiscovery;
  EtcdRegistration: typeof import("./etcd_registration.ts").EtcdRegistration;
}

/** Imports the etcd client, discovery and registration modules. */
export async function loadEtcd(): Promise<EtcdModules> {
  try {
    const [client, discovery, registration] = await Promise.all([
      import("./etcd_client.ts"),
      import("./etcd_discovery.ts"),
      import("./etcd_registration.ts"),
    ]);
    return {
      createEtcdClient: client.createEtcdClient,
      EtcdDiscovery: discovery.EtcdDiscovery,
      EtcdRegistration: registration.EtcdRegistration,
    };
  } catch (error) {
    if (/__dirname/.test(String((error as Error)?.message))) {
      throw new Error(
        "etcd discovery is not available in a bundle: the etcd3 package loads its .proto files " +
          "from its npm folder at run time. Run the entry with 'deno task' (or 'deno compile'), " +
          "or use '--discovery builtin' with the bundle",
        { cause: error },
      );
    }
    throw error;
  }
}
