/* placeholder: replaced by the real suite */
#include "test.h"
int zl_test_register_pool(void) { return 0; }
