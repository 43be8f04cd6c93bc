// How facerec's C++ (facerec-ops' ops.cpp, facerec-dist's shim.cpp) reports errors to Rust: no
// C++ exception crosses the C API; every entry point runs its body in `facerec::guarded`, which
// returns NULL on success or a malloc'd message that Rust copies and frees with
// fr_ops_string_free (facerec_ops::ffi::take_error).
#ifndef FACEREC_GUARDED_H
#define FACEREC_GUARDED_H

#include <cstdlib>
#include <cstring>
#include <exception>

#include <c10/util/Exception.h>

namespace facerec {

inline char* dup_error(const char* what) {
  const char* msg = (what != nullptr && what[0] != '\0') ? what : "unknown C++ exception";
  char* out = static_cast<char*>(std::malloc(std::strlen(msg) + 1));
  if (out != nullptr) {
    std::strcpy(out, msg);
  }
  return out;
}

// Runs `body`, turning every exception into an error string.
template <typename F>
char* guarded(F&& body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error& e) {
    // what_without_backtrace: the message, not a C++ stack trace.
    return dup_error(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return dup_error(e.what());
  } catch (...) {
    return dup_error("unknown C++ exception");
  }
}

}  // namespace facerec

#endif
