#include "zl-internal.h"
