import gc, sys, os
mode = os.environ.get("GCMODE", "")
import wsgi_ours
if mode == "off":
    gc.disable()
elif mode == "freeze":
    gc.collect(); gc.freeze()
wsgi_ours.main()
