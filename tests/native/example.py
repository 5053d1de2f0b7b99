"""Generate text with libedgellm.so from Python through ctypes (the README's "C ABI" example).

usage: EDGELLM_LIB=path/to/libedgellm.so python3 example.py MODEL.gguf [PROMPT]
"""
import ctypes, os, sys

lib = ctypes.CDLL(os.environ.get("EDGELLM_LIB", "./libedgellm.so"))

class ContextParams(ctypes.Structure):  # edgellm_context_params
    _fields_ = [("context_length", ctypes.c_int32), ("threads", ctypes.c_int32), ("seed", ctypes.c_uint64),
                ("temperature", ctypes.c_float), ("top_k", ctypes.c_int32), ("top_p", ctypes.c_float),
                ("min_p", ctypes.c_float), ("repeat_penalty", ctypes.c_float), ("repeat_last_n", ctypes.c_int32),
                ("backend", ctypes.c_int32), ("device", ctypes.c_int32),  # 0 = cpu, 1 = vulkan, 2 = auto; -1 = best device
                ("type_k", ctypes.c_int32), ("type_v", ctypes.c_int32),  # KV cache: 0 = f16, 1 = q8_0, 2 = q4_0
                ("swa_full", ctypes.c_int32)]  # 1: sliding-window layers keep every position (--swa-full)

# int32_t (*edgellm_token_callback)(const char* text, int32_t len, void* user_data)
TokenCallback = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.POINTER(ctypes.c_char), ctypes.c_int32, ctypes.c_void_p)
lib.edgellm_last_error.restype = ctypes.c_char_p
lib.edgellm_version.restype = ctypes.c_char_p
lib.edgellm_model_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
lib.edgellm_model_free.argtypes = [ctypes.c_void_p]
lib.edgellm_context_params_default.restype = ContextParams
lib.edgellm_context_create.argtypes = [ctypes.c_void_p, ctypes.POINTER(ContextParams), ctypes.POINTER(ctypes.c_void_p)]
lib.edgellm_context_free.argtypes = [ctypes.c_void_p]
lib.edgellm_context_generate.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, ctypes.c_int32, TokenCallback, ctypes.c_void_p]

def check(rc):
    if rc != 0:
        raise RuntimeError(f"edgellm error {rc}: {lib.edgellm_last_error().decode()}")

model = ctypes.c_void_p()
check(lib.edgellm_model_load(sys.argv[1].encode(), ctypes.byref(model)))
params = lib.edgellm_context_params_default()
params.temperature = 0.0  # greedy
ctx = ctypes.c_void_p()
check(lib.edgellm_context_create(model, ctypes.byref(params), ctypes.byref(ctx)))

@TokenCallback
def on_text(text, length, user_data):
    sys.stdout.write(ctypes.string_at(text, length).decode("utf-8"))  # whole characters only
    sys.stdout.flush()
    return 0  # nonzero stops

prompt = (sys.argv[2] if len(sys.argv) > 2 else "Once upon a time").encode()
sys.stdout.write(prompt.decode())
check(lib.edgellm_context_generate(ctx, prompt, len(prompt), 64, on_text, None))
print()
lib.edgellm_context_free(ctx)
lib.edgellm_model_free(model)
