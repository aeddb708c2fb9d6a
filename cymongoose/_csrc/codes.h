/* The one return-code convention of the shim: a function that can fail
 * returns CYM_OK (0) or a count on success, and one of these negative codes
 * on failure.  Python reads them in one place, errors.check(). */
#ifndef CYM_CODES_H
#define CYM_CODES_H
enum cym_code {
  CYM_OK = 0,
  CYM_E_NOMEM = -1,            /* an allocation or a send buffer grew too far */
  CYM_E_CLOSED = -2,           /* the manager (or its wakeup queue) is closed */
  CYM_E_SIGNAL = -3,           /* the wakeup doorbell could not be sent */
  CYM_E_NOT_WS = -4,           /* the connection is not a WebSocket */
  CYM_E_WS_CLOSING = -5,       /* our WebSocket CLOSE frame already went out */
  CYM_E_IS_WS = -6,            /* the connection already is a WebSocket */
  CYM_E_TLS_ALREADY = -7,      /* TLS is already initialised */
  CYM_E_TLS_FREE_PENDING = -8, /* a deferred tls_free has not run yet */
  CYM_E_TOO_BIG = -9,          /* the result does not fit the buffer given */
  CYM_E_STATE = -10            /* not allowed in the connection's current state */
};
#endif
