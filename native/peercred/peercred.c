/*
 * Kernel peer credentials of a connected Unix socket, for the Sigil agent's Workload API.
 * The agent must learn who is calling from the kernel, never from the caller, and Node has
 * no API for SO_PEERCRED; this addon is the smallest bridge: two synchronous getsockopt calls
 * on a file descriptor the agent already owns (and malloc_trim, for the agent's RSS after
 * minting bursts). Plain C over node_api.h, no dependencies.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* struct ucred */
#endif
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <node_api.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* Stable names for the errors callers may want to tell apart; others keep their number. */
static const char *errno_code(int err) {
  switch (err) {
    case EBADF: return "EBADF";
    case ENOTSOCK: return "ENOTSOCK";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case ENOTCONN: return "ENOTCONN";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case ERANGE: return "ERANGE";
    default: return "EUNKNOWN";
  }
}

static void throw_errno(napi_env env, const char *what, int err) {
  char message[160];
  snprintf(message, sizeof message, "%s failed: %s", what, strerror(err));
  napi_value code, msg, error, errno_value;
  napi_create_string_utf8(env, errno_code(err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, code, msg, &error);
  napi_create_int32(env, err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_throw(env, error);
}

/* Reads the single argument as a non-negative file descriptor; throws and returns -1 otherwise. */
static int fd_argument(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "fd is required");
    return -1;
  }
  napi_valuetype type;
  napi_typeof(env, argv[0], &type);
  int32_t fd = -1;
  if (type != napi_number || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "fd must be a non-negative integer");
    return -1;
  }
  return fd;
}

static napi_value get_peer_cred(napi_env env, napi_callback_info info) {
  int fd = fd_argument(env, info);
  if (fd < 0) return NULL;
  struct ucred cred;
  socklen_t len = sizeof cred;
  memset(&cred, 0, sizeof cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    throw_errno(env, "getsockopt(SO_PEERCRED)", errno);
    return NULL;
  }
  napi_value result, pid, uid, gid;
  napi_create_object(env, &result);
  napi_create_int32(env, (int32_t)cred.pid, &pid);
  napi_create_uint32(env, (uint32_t)cred.uid, &uid);
  napi_create_uint32(env, (uint32_t)cred.gid, &gid);
  napi_set_named_property(env, result, "pid", pid);
  napi_set_named_property(env, result, "uid", uid);
  napi_set_named_property(env, result, "gid", gid);
  return result;
}

static napi_value get_peer_groups(napi_env env, napi_callback_info info) {
  int fd = fd_argument(env, info);
  if (fd < 0) return NULL;
#ifdef SO_PEERGROUPS
  /* The kernel says how much room it needs when the buffer is too small (ERANGE). */
  socklen_t len = 64 * sizeof(gid_t);
  gid_t *groups = NULL;
  for (int attempt = 0; attempt < 4; attempt++) {
    gid_t *grown = realloc(groups, len > 0 ? len : sizeof(gid_t));
    if (grown == NULL) {
      free(groups);
      throw_errno(env, "getsockopt(SO_PEERGROUPS)", ENOMEM);
      return NULL;
    }
    groups = grown;
    socklen_t got = len;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &got) == 0) {
      size_t count = got / sizeof(gid_t);
      napi_value array;
      napi_create_array_with_length(env, count, &array);
      for (size_t i = 0; i < count; i++) {
        napi_value gid;
        napi_create_uint32(env, (uint32_t)groups[i], &gid);
        napi_set_element(env, array, (uint32_t)i, gid);
      }
      free(groups);
      return array;
    }
    if (errno != ERANGE || got <= len) {
      int err = errno;
      free(groups);
      throw_errno(env, "getsockopt(SO_PEERGROUPS)", err);
      return NULL;
    }
    len = got;
  }
  free(groups);
  throw_errno(env, "getsockopt(SO_PEERGROUPS)", ERANGE);
  return NULL;
#else
  throw_errno(env, "getsockopt(SO_PEERGROUPS)", ENOPROTOOPT);
  return NULL;
#endif
}

/*
 * Hands freed heap pages back to the kernel (glibc's malloc_trim). Minting thousands of SVIDs
 * leaves the allocator holding pages freed by OpenSSL and HTTP/2 temporaries between the few
 * long-lived blocks; without this they count as agent RSS for good. False elsewhere.
 */
static napi_value trim_malloc(napi_env env, napi_callback_info info) {
  (void)info;
#ifdef __GLIBC__
  int released = malloc_trim(0);
#else
  int released = 0;
#endif
  napi_value result;
  napi_get_boolean(env, released != 0, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"getPeerCred", NULL, get_peer_cred, NULL, NULL, NULL, napi_enumerable, NULL},
    {"getPeerGroups", NULL, get_peer_groups, NULL, NULL, NULL, napi_enumerable, NULL},
    {"trimMalloc", NULL, trim_malloc, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
