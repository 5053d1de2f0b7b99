namespace EdgeLlm.Kernels;

/// <summary>Element-wise operations of the forward pass.</summary>
internal static unsafe class Activations
{
    /// <summary>gate[i] = silu(gate[i]) · up[i], silu(x) = x / (1 + expf(-x)) as ggml_silu_f32.</summary>
    public static void SwiGlu(float* gate, float* up, int n)
    {
        for (int i = 0; i < n; i++)
        {
            float g = gate[i];
            gate[i] = g / (1.0f + MathF.Exp(-g)) * up[i];
        }
    }

    /// <summary>x[i] += y[i].</summary>
    public static void Add(float* x, float* y, long n)
    {
        for (long i = 0; i < n; i++) x[i] += y[i];
    }

    /// <summary>Adds <paramref name="bias"/> to each of <paramref name="rows"/> rows of x.</summary>
    public static void AddBias(float* x, float[] bias, int rows)
    {
        int n = bias.Length;
        for (int r = 0; r < rows; r++)
        {
            float* row = x + (long)r * n;
            for (int i = 0; i < n; i++) row[i] += bias[i];
        }
    }
}
