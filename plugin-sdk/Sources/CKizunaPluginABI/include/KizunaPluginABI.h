// The one C-layout structure a Kizuna plugin exposes, reached through the symbol
// `kizuna_plugin_entry`. The host reads it before it touches any Swift type of the
// plugin, so a plugin built for another ABI, SDK or compiler is refused with an error
// instead of crashing the process. Never reorder or remove fields: add new ones at the
// end and raise KIZUNA_PLUGIN_ABI_VERSION.
#ifndef KIZUNA_PLUGIN_ABI_H
#define KIZUNA_PLUGIN_ABI_H

#include <stdint.h>

/// "KZNA" in ASCII: marks a Kizuna plugin descriptor.
#define KIZUNA_PLUGIN_MAGIC 0x4B5A4E41u

/// The layout version of kizuna_plugin_descriptor.
#define KIZUNA_PLUGIN_ABI_VERSION 1u

/// The entry symbol every plugin exports.
#define KIZUNA_PLUGIN_ENTRY_SYMBOL "kizuna_plugin_entry"

typedef struct kizuna_plugin_descriptor {
    uint32_t magic;
    uint32_t abi_version;
    /// The SDK version the plugin was compiled against, NUL-terminated.
    const char *sdk_version;
    /// The Swift compiler that compiled the plugin.
    uint32_t compiler_major;
    uint32_t compiler_minor;
    uint32_t compiler_patch;
    /// 1 discovery, 2 transport, 3 file transfer, 4 streaming.
    uint32_t kind;
    /// The metadata address of an SDK type as the plugin sees it. It equals the host's
    /// only when the plugin uses the process's one copy of the SDK.
    const void *sdk_identity;
    /// Makes the plugin object; returns it retained (+1). `context` is `factory_context`.
    void *(*make_plugin)(void *context);
    void *factory_context;
} kizuna_plugin_descriptor;

/// The signature of `kizuna_plugin_entry`.
typedef const kizuna_plugin_descriptor *(*kizuna_plugin_entry_function)(void);

#endif
