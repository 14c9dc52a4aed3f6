/* placeholder: certificate helpers shared by the tls suites */
#ifndef ZLTK_TEST_TLS_CERTS_H
#define ZLTK_TEST_TLS_CERTS_H
#endif
