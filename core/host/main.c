/* zltk-host — the zltk host program.
 *
 * Loads the plugins a configuration names and runs its instances: servers
 * that listen and clients that connect, each driven by a plugin's handler.
 * Without --config it runs a built-in configuration (core/host/default.conf);
 * --connect and --listen run one client or one server for one-off use
 * (cli.c).  SIGINT/SIGTERM stop it gracefully (run.c).
 *
 * main() is the list of steps; each step prints its own problems and
 * returns the exit status: 0 success, 1 runtime failure (bad
 * configuration, a server that cannot listen, --connect that failed), 2
 * bad command line.
 */
#define G_LOG_DOMAIN "zltk-host"
#include "config.h"

#include <stdio.h>

#include <glib.h>

#include <zltk/zltk.h>

#include "host-config.h"

/* Plugins' own log lines in zltk's format from the start; --check-config
 * has a writer of its own (check.c). */
static int start_log(zl_host_t *h, const zl_host_opts_t *o)
{
    zl_log_options_t lopts = {.level = o->log_level, .console = true,
                              .file = o->log_file};
    int rc = o->check ? zl_host_check_log_init(&h->cfg, &lopts)
                      : zl_log_init(&lopts);

    if (rc < 0) {
        fprintf(stderr, "zltk-host: cannot open log file '%s': %s\n",
                o->log_file ? o->log_file : "", zl_strerror(rc));
        return 1;
    }
    h->log_up = true;
    return 0;
}

/* Read the configuration, then load the plugins it names and create its
 * instances.  Every instance whose handler resolved checks its own keys,
 * even after other errors: one pass lists every problem.  The errors are
 * counted in h->cfg, for the caller to judge. */
static void load(zl_host_t *h, const zl_host_opts_t *o)
{
    zl_host_cfg_t *cfg = &h->cfg;
    zl_log_level_t lv;

    cfg->lenient = !o->strict && !o->check;
    zl_host_cli_load_config(cfg, o);
    cfg->lenient = !o->strict && !o->check;
    cfg->on_finished = zl_host_on_finished;
    if (cfg->log_level && !o->log_level_given &&
        zl_log_level_parse(cfg->log_level, &lv) == 0)
        zl_log_set_level(lv);
    h->path = zl_host_plugin_path(o->plugin_dirs, cfg->plugin_dir);
    if (cfg->kf && zl_plugins_new(&h->reg) == 0) {
        if (o->check)
            zl_host_use_probe(h->reg, o->self);
        zl_host_cfg_resolve(cfg, h->reg, (const char *const *)h->path);
        zl_host_cfg_instances(cfg);
    }
}

/* A run refuses a configuration with errors. */
static int refuse_errors(const zl_host_cfg_t *cfg)
{
    if (!cfg->errors)
        return 0;
    fprintf(stderr, "zltk-host: %s: %d error%s; nothing started (zltk-host "
                    "--check-config lists every problem)\n",
            cfg->file, cfg->errors, cfg->errors == 1 ? "" : "s");
    return 1;
}

/* --check-config, or a run: log, load, then judge or run. */
static int check_or_run(const zl_host_opts_t *o)
{
    zl_host_t h = {0};
    int status = start_log(&h, o);

    if (status == 0) {
        load(&h, o);
        if (o->check)
            status = zl_host_check_verdict(&h);
        else if ((status = refuse_errors(&h.cfg)) == 0)
            status = zl_host_run(&h, o);
    }
    zl_host_free(&h, status);
    return status;
}

/* One mode, the first that applies. */
static int run_mode(zl_host_opts_t *o, int argc, char **argv)
{
    int status;

    if (o->probe)
        return zl_host_probe_child(o->probe);
    if (argc > 1) {
        fprintf(stderr, "zltk-host: unexpected argument '%s' (try --help)\n",
                argv[1]);
        return 2;
    }
    if (o->version)
        return zl_host_cli_version();
    if (o->print_config)
        return zl_host_cli_print_config();
    status = zl_host_cli_check(o);
    if (status)
        return status;
    return o->list ? zl_host_list_plugins(o) : check_or_run(o);
}

int main(int argc, char **argv)
{
    zl_host_opts_t o;
    int status = zl_host_cli_parse(&o, &argc, &argv);

    if (status == 0)
        status = run_mode(&o, argc, argv);
    zl_host_opts_free(&o);
    return status;
}
