// zltk test plugin "cxx": a plugin written in C++, built by libtool with the
// C++ compiler.  ZLTK_PLUGIN_DEFINE must give its entry C linkage, and the
// headers' extern "C" guards must make the libzltk functions it calls
// directly link by their C names: otherwise dlopen(RTLD_NOW) fails on an
// undefined mangled symbol, or the loader finds no zltk_plugin_entry.
#include <cerrno>
#include <string>

#include <zltk/zltk.h>

namespace {

struct greeter {
    std::string text;
    explicit greeter(const char *t) : text(t) {}
};

greeter *greeting;

// One function of every installed header that declares any: without that
// header's extern "C" guard, the reference is to a mangled name that
// libzltk does not have, and dlopen(RTLD_NOW) refuses this plugin.
using fn_t = void (*)();
const fn_t linked[] = {
    reinterpret_cast<fn_t>(&zl_client_connect),
    reinterpret_cast<fn_t>(&zl_now_ms),
    reinterpret_cast<fn_t>(&zl_conn_send),
    reinterpret_cast<fn_t>(&zl_strerror),
    reinterpret_cast<fn_t>(&zl_instance_new),
    reinterpret_cast<fn_t>(&zl_plugins_new),
    reinterpret_cast<fn_t>(&zl_log_init),
    reinterpret_cast<fn_t>(&zl_addr_from_ip),
    reinterpret_cast<fn_t>(&zl_poller_new),
    reinterpret_cast<fn_t>(&zl_poller_pool_new),
    reinterpret_cast<fn_t>(&zl_runtime_init),
    reinterpret_cast<fn_t>(&zl_server_new),
    reinterpret_cast<fn_t>(&zl_worker_pool_new),
    reinterpret_cast<fn_t>(&zl_version),
};

void cxx_on_recv(zl_session_t *s, void *state, zl_buf_t *buf)
{
    (void)s, (void)state, (void)buf;
}

const zl_handler_t cxx_handler = {
    .struct_size = sizeof(zl_handler_t),
    .on_recv = cxx_on_recv,
};

const zl_registration_t cxx_reg = {
    .struct_size = sizeof(zl_registration_t),
    .kind = ZL_PROVIDES_SERVER,
    .name = "cxx-echo",
    .description = "a handler registered from C++ (test)",
    .vtable = &cxx_handler,
};

int cxx_init(zl_plugin_t *self, const zl_host_api_t *host)
{
    // Direct calls into libzltk, one from each of a few headers.
    std::string why = zl_strerror(-EINVAL);
    if (why.empty() || zl_now_ms() == 0 || !zl_version())
        return -EPROTO;
    for (fn_t f : linked)
        if (!f)
            return -EPROTO;
    greeting = new greeter("hello from C++");
    host->log(self, ZL_LOG_INFO, "%s (%s)", greeting->text.c_str(),
              why.c_str());
    return host->register_provider(self, &cxx_reg);
}

void cxx_destroy(zl_plugin_t *self)
{
    (void)self;
    delete greeting;
    greeting = nullptr;
}

} // namespace

ZLTK_PLUGIN_DEFINE(
    .name = "cxx",
    .version = "1.0",
    .description = "written in C++ (test)",
    .init = cxx_init,
    .destroy = cxx_destroy,
)
