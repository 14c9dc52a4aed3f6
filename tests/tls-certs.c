/* placeholder: certificate helpers shared by the tls suites */
#include "tls-certs.h"
typedef int zl_test_tls_certs_unused;
