/* placeholder: replaced by the real suite */
#include "test.h"
int zl_test_register_error(void) { return 0; }
