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

#endif
