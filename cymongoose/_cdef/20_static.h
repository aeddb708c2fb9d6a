/* Static files (ranges, conditional requests, safe paths):
   cymongoose/_csrc/static.c. */

#define CYM_STATIC_NO_SYMLINKS 1
#define CYM_STATIC_NO_DOTFILES 2

void cym_serve(struct mg_connection *c, struct mg_http_message *hm,
               const struct mg_http_serve_opts *opts, const char *file,
               const char *cache_control, int flags);
