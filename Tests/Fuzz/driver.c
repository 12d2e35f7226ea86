// libFuzzer's entry point for a Kizuna plugin's decoders: the plugin library (built with
// coverage instrumentation, see libfuzzer.sh) is linked in, and every input goes to the
// decoder entry the plugin exports.
#include <stddef.h>
#include <stdint.h>

int kizuna_fuzz_one_input(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kizuna_fuzz_one_input(data, size);
    return 0;
}
