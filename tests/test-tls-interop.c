/* placeholder: replaced by the tls-interop suite */
#include "test.h"
int zl_test_register_tls_interop(void)
{
    return 0;
}
