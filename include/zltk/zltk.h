/* zltk — everything in one include. */
#ifndef ZLTK_H
#define ZLTK_H

#include <zltk/common.h>
#include <zltk/version.h>
#include <zltk/error.h>
#include <zltk/clock.h>
#include <zltk/log.h>
#include <zltk/poller.h>
#include <zltk/pool.h>
#include <zltk/worker.h>
#include <zltk/runtime.h>
#include <zltk/net.h>
#include <zltk/conn.h>
#include <zltk/client.h>
#include <zltk/server.h>
#include <zltk/handler.h>
#include <zltk/plugin.h>
#include <zltk/session.h>
#include <zltk/instance.h>
#include <zltk/loader.h>

#endif
