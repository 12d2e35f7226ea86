// Debian's libffi (libffi-dev), for calling plugin actions whose signatures are known
// only from their manifests. The accessor hands out the ffi_type globals, which Swift 6
// would otherwise refuse to touch as shared mutable state.
#ifndef KIZUNA_CFFI_H
#define KIZUNA_CFFI_H

#include <ffi.h>

/// The libffi type for an action type: 0 void, 1–4 sint8/16/32/64, 5–8 uint8/16/32/64,
/// 9 double, 10 pointer (strings), 11 bool as uint8.
static inline ffi_type *kizuna_ffi_type(int code) {
    switch (code) {
    case 1: return &ffi_type_sint8;
    case 2: return &ffi_type_sint16;
    case 3: return &ffi_type_sint32;
    case 4: return &ffi_type_sint64;
    case 5: return &ffi_type_uint8;
    case 6: return &ffi_type_uint16;
    case 7: return &ffi_type_uint32;
    case 8: return &ffi_type_uint64;
    case 9: return &ffi_type_double;
    case 10: return &ffi_type_pointer;
    case 11: return &ffi_type_uint8;
    default: return &ffi_type_void;
    }
}

#endif
