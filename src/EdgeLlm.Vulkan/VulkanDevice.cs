using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Silk.NET.Core.Native;
using Silk.NET.Vulkan;
using VkBuffer = Silk.NET.Vulkan.Buffer;

namespace EdgeLlm.Vulkan;

/// <summary>
/// A Vulkan instance, one logical device with one compute queue, and what the backend caches on
/// it: shader modules and compute pipelines (per shader variant and specialization constants),
/// descriptor-set layouts, a command pool and a staging buffer for uploads. Not thread-safe.
/// </summary>
public sealed unsafe class VulkanDevice : IDisposable
{
    /// <summary>Bytes of the staging buffer weights are copied through (in chunks of this size).</summary>
    internal const long StagingBytes = 32L << 20;

    /// <summary>Push-constant bytes every pipeline layout declares (the largest any shader uses).</summary>
    internal const uint PushBytes = 32;

    private static readonly byte[] s_main = "main\0"u8.ToArray();

    private readonly Vk _vk;
    private readonly Instance _instance;
    private readonly PhysicalDevice _physical;
    private readonly Device _device;
    private readonly Queue _queue;
    private readonly CommandPool _pool;
    private readonly Fence _fence;
    private readonly PhysicalDeviceMemoryProperties _memory;
    private readonly Dictionary<int, (DescriptorSetLayout Set, PipelineLayout Pipeline)> _layouts = [];
    private readonly Dictionary<string, ShaderModule> _modules = [];
    private readonly Dictionary<string, Pipeline> _pipelines = [];
    private readonly List<DescriptorPool> _descriptorPools = [];
    private readonly List<QueryPool> _queryPools = [];
    private int _setsLeftInPool;
    private VulkanBuffer? _staging;
    private bool _disposed;

    private VulkanDevice(Vk vk, Instance instance, PhysicalDevice physical, VulkanDeviceInfo info, uint queueFamily)
    {
        _vk = vk;
        _instance = instance;
        _physical = physical;
        Info = info;
        PhysicalDeviceMemoryProperties mp;
        vk.GetPhysicalDeviceMemoryProperties(physical, &mp);
        _memory = mp;
        PhysicalDeviceProperties props;
        vk.GetPhysicalDeviceProperties(physical, &props);
        uint nq = 0;
        vk.GetPhysicalDeviceQueueFamilyProperties(physical, &nq, null);
        var families = new QueueFamilyProperties[nq];
        fixed (QueueFamilyProperties* q = families)
            vk.GetPhysicalDeviceQueueFamilyProperties(physical, &nq, q);
        // Timestamps are usable when the compute queue's family counts them (valid bits > 0).
        TimestampPeriodNs = queueFamily < nq && families[queueFamily].TimestampValidBits > 0 ? props.Limits.TimestampPeriod : 0;

        float priority = 1f;
        var qci = new DeviceQueueCreateInfo { SType = StructureType.DeviceQueueCreateInfo, QueueFamilyIndex = queueFamily, QueueCount = 1, PQueuePriorities = &priority };
        var dci = new DeviceCreateInfo { SType = StructureType.DeviceCreateInfo, QueueCreateInfoCount = 1, PQueueCreateInfos = &qci };
        Device device;
        Check(vk.CreateDevice(physical, &dci, null, &device), "vkCreateDevice");
        _device = device;
        Queue queue;
        vk.GetDeviceQueue(device, queueFamily, 0, &queue);
        _queue = queue;
        var pci = new CommandPoolCreateInfo { SType = StructureType.CommandPoolCreateInfo, QueueFamilyIndex = queueFamily, Flags = CommandPoolCreateFlags.ResetCommandBufferBit };
        CommandPool pool;
        Check(vk.CreateCommandPool(device, &pci, null, &pool), "vkCreateCommandPool");
        _pool = pool;
        var fci = new FenceCreateInfo { SType = StructureType.FenceCreateInfo };
        Fence fence;
        Check(vk.CreateFence(device, &fci, null, &fence), "vkCreateFence");
        _fence = fence;
    }

    /// <summary>The device this object drives.</summary>
    public VulkanDeviceInfo Info { get; }

    internal Vk Api => _vk;

    /// <summary>Nanoseconds per timestamp tick on the compute queue, or 0 where it writes no timestamps.</summary>
    internal float TimestampPeriodNs { get; }

    /// <summary>A timestamp query pool of <paramref name="count"/> queries, destroyed with the device.</summary>
    internal QueryPool CreateTimestampPool(uint count)
    {
        var ci = new QueryPoolCreateInfo { SType = StructureType.QueryPoolCreateInfo, QueryType = QueryType.Timestamp, QueryCount = count };
        QueryPool pool;
        Check(_vk.CreateQueryPool(_device, &ci, null, &pool), "vkCreateQueryPool");
        _queryPools.Add(pool);
        return pool;
    }

    /// <summary>Destroys a pool from <see cref="CreateTimestampPool"/> (after the work using it has completed).</summary>
    internal void DestroyQueryPool(QueryPool pool)
    {
        if (_disposed || !_queryPools.Remove(pool)) return;
        _vk.DestroyQueryPool(_device, pool, null);
    }

    /// <summary>Reads <paramref name="into"/>.Length 64-bit timestamps of <paramref name="pool"/> (after the submit that wrote them has completed).</summary>
    internal void ReadTimestamps(QueryPool pool, Span<ulong> into)
    {
        fixed (ulong* p = into)
            Check(_vk.GetQueryPoolResults(_device, pool, 0, (uint)into.Length, (nuint)(into.Length * sizeof(ulong)), p, sizeof(ulong),
                QueryResultFlags.Result64Bit | QueryResultFlags.ResultWaitBit), "vkGetQueryPoolResults");
    }
    internal Device Handle => _device;

    /// <summary>
    /// Lists the Vulkan physical devices. Throws <see cref="VulkanUnavailableException"/> when the
    /// Vulkan loader cannot be loaded or no driver (ICD) answers.
    /// </summary>
    public static IReadOnlyList<VulkanDeviceInfo> EnumerateDevices()
    {
        var (vk, instance) = CreateInstance();
        try
        {
            return PhysicalDevices(vk, instance).Select(p => p.Info).ToArray();
        }
        finally
        {
            vk.DestroyInstance(instance, null);
            vk.Dispose();
        }
    }

    /// <summary>
    /// Opens device <paramref name="index"/> (see <see cref="EnumerateDevices"/>), or when null the
    /// best one: discrete GPU, then integrated, virtual, other, CPU (lavapipe).
    /// </summary>
    /// <exception cref="VulkanUnavailableException">no loader, no driver, no device with a compute queue, index out of range, or device creation failed.</exception>
    public static VulkanDevice Open(int? index = null)
    {
        var (vk, instance) = CreateInstance();
        try
        {
            var devices = PhysicalDevices(vk, instance);
            if (devices.Count == 0)
                throw new VulkanUnavailableException("the Vulkan driver reports no physical devices");
            (PhysicalDevice Handle, VulkanDeviceInfo Info, uint Family) chosen;
            if (index is int i)
            {
                if (i < 0 || i >= devices.Count)
                    throw new VulkanUnavailableException($"Vulkan device {i} does not exist (devices: 0..{devices.Count - 1})");
                chosen = devices[i];
                if (!chosen.Info.HasComputeQueue)
                    throw new VulkanUnavailableException($"Vulkan device {i} ({chosen.Info.Name}) has no compute queue");
            }
            else
            {
                var usable = devices.Where(d => d.Info.HasComputeQueue).ToList();
                if (usable.Count == 0)
                    throw new VulkanUnavailableException("no Vulkan device has a compute queue");
                chosen = usable.OrderBy(d => Rank(d.Info.Type)).First();
            }
            return new VulkanDevice(vk, instance, chosen.Handle, chosen.Info, chosen.Family);
        }
        catch
        {
            vk.DestroyInstance(instance, null);
            vk.Dispose();
            throw;
        }
    }

    private static int Rank(VulkanDeviceType t) => t switch
    {
        VulkanDeviceType.Discrete => 0,
        VulkanDeviceType.Integrated => 1,
        VulkanDeviceType.Virtual => 2,
        VulkanDeviceType.Other => 3,
        _ => 4,
    };

    private static (Vk, Instance) CreateInstance()
    {
        Vk vk;
        try
        {
            vk = Vk.GetApi();
        }
        catch (Exception e)
        {
            // Silk.NET throws when libvulkan.so.1 / vulkan-1.dll is not installed.
            throw new VulkanUnavailableException($"the Vulkan loader (libvulkan) could not be loaded: {e.Message}. Install a Vulkan driver (e.g. Debian: apt-get install libvulkan1 mesa-vulkan-drivers)", e);
        }
        var app = new ApplicationInfo
        {
            SType = StructureType.ApplicationInfo,
            ApiVersion = Vk.MakeVersion(1, 1, 0),
            PApplicationName = null,
            PEngineName = null,
        };
        var ici = new InstanceCreateInfo { SType = StructureType.InstanceCreateInfo, PApplicationInfo = &app };
        Instance instance;
        Result r;
        try
        {
            r = vk.CreateInstance(&ici, null, &instance);
        }
        catch (Exception e)
        {
            vk.Dispose();
            throw new VulkanUnavailableException($"vkCreateInstance failed: {e.Message}", e);
        }
        if (r != Result.Success)
        {
            vk.Dispose();
            string why = r == Result.ErrorIncompatibleDriver
                ? "no Vulkan driver (ICD) was found or none supports Vulkan 1.1"
                : $"vkCreateInstance returned {r}";
            throw new VulkanUnavailableException($"Vulkan is unavailable: {why}. Check the driver installation (VK_ICD_FILENAMES / VK_DRIVER_FILES if set)");
        }
        return (vk, instance);
    }

    private static List<(PhysicalDevice Handle, VulkanDeviceInfo Info, uint Family)> PhysicalDevices(Vk vk, Instance instance)
    {
        uint count = 0;
        Result r = vk.EnumeratePhysicalDevices(instance, &count, null);
        if (r != Result.Success)
            throw new VulkanUnavailableException($"vkEnumeratePhysicalDevices returned {r}");
        var handles = new PhysicalDevice[count];
        fixed (PhysicalDevice* p = handles)
            Check(vk.EnumeratePhysicalDevices(instance, &count, p), "vkEnumeratePhysicalDevices");
        var list = new List<(PhysicalDevice, VulkanDeviceInfo, uint)>();
        for (int i = 0; i < count; i++)
        {
            var pd = handles[i];
            PhysicalDeviceProperties props;
            vk.GetPhysicalDeviceProperties(pd, &props);
            string name = SilkMarshal.PtrToString((nint)props.DeviceName) ?? "?";
            uint api = props.ApiVersion;
            string apiText = $"{api >> 22}.{(api >> 12) & 0x3FF}.{api & 0xFFF}";

            var sub = new PhysicalDeviceSubgroupProperties { SType = StructureType.PhysicalDeviceSubgroupProperties };
            var p2 = new PhysicalDeviceProperties2 { SType = StructureType.PhysicalDeviceProperties2, PNext = &sub };
            vk.GetPhysicalDeviceProperties2(pd, &p2);

            var f16i8 = new PhysicalDeviceShaderFloat16Int8Features { SType = StructureType.PhysicalDeviceShaderFloat16Int8Features };
            var s8 = new PhysicalDevice8BitStorageFeatures { SType = StructureType.PhysicalDevice8BitStorageFeatures, PNext = &f16i8 };
            var s16 = new PhysicalDevice16BitStorageFeatures { SType = StructureType.PhysicalDevice16BitStorageFeatures, PNext = &s8 };
            var f2 = new PhysicalDeviceFeatures2 { SType = StructureType.PhysicalDeviceFeatures2, PNext = &s16 };
            vk.GetPhysicalDeviceFeatures2(pd, &f2);

            PhysicalDeviceMemoryProperties mp;
            vk.GetPhysicalDeviceMemoryProperties(pd, &mp);
            long local = 0;
            for (int h = 0; h < mp.MemoryHeapCount; h++)
                if ((mp.MemoryHeaps[h].Flags & MemoryHeapFlags.DeviceLocalBit) != 0)
                    local = Math.Max(local, (long)mp.MemoryHeaps[h].Size);

            uint nq = 0;
            vk.GetPhysicalDeviceQueueFamilyProperties(pd, &nq, null);
            var qf = new QueueFamilyProperties[nq];
            fixed (QueueFamilyProperties* q = qf)
                vk.GetPhysicalDeviceQueueFamilyProperties(pd, &nq, q);
            int family = Array.FindIndex(qf, q => (q.QueueFlags & QueueFlags.ComputeBit) != 0);

            var type = props.DeviceType switch
            {
                PhysicalDeviceType.DiscreteGpu => VulkanDeviceType.Discrete,
                PhysicalDeviceType.IntegratedGpu => VulkanDeviceType.Integrated,
                PhysicalDeviceType.VirtualGpu => VulkanDeviceType.Virtual,
                PhysicalDeviceType.Cpu => VulkanDeviceType.Cpu,
                _ => VulkanDeviceType.Other,
            };
            bool arith = (sub.SupportedStages & ShaderStageFlags.ComputeBit) != 0
                && (sub.SupportedOperations & SubgroupFeatureFlags.ArithmeticBit) != 0;
            var info = new VulkanDeviceInfo(i, name, type, apiText, local, (int)Math.Max(1, sub.SubgroupSize), arith,
                f16i8.ShaderFloat16, f16i8.ShaderInt8, s16.StorageBuffer16BitAccess, s8.StorageBuffer8BitAccess, family >= 0);
            list.Add((pd, info, (uint)Math.Max(family, 0)));
        }
        return list;
    }

    internal static void Check(Result r, string what)
    {
        if (r == Result.Success) return;
        string hint = r is Result.ErrorOutOfDeviceMemory or Result.ErrorOutOfHostMemory ? " (too little memory on the device)" : "";
        throw new VulkanUnavailableException($"{what} failed: {r}{hint}");
    }

    // ---- memory and buffers ----

    private uint FindMemoryType(uint typeBits, MemoryPropertyFlags required, MemoryPropertyFlags preferred)
    {
        int fallback = -1;
        for (int i = 0; i < _memory.MemoryTypeCount; i++)
        {
            if ((typeBits & (1u << i)) == 0) continue;
            var flags = _memory.MemoryTypes[i].PropertyFlags;
            if ((flags & required) != required) continue;
            if ((flags & preferred) == preferred) return (uint)i;
            if (fallback < 0) fallback = i;
        }
        if (fallback < 0)
            throw new VulkanUnavailableException($"the Vulkan device has no memory type with {required}");
        return (uint)fallback;
    }

    /// <summary>
    /// Creates a storage buffer of <paramref name="bytes"/> (rounded up to 4). Host buffers are
    /// host-visible, coherent and mapped (the CPU writes inputs and reads logits directly);
    /// device buffers prefer device-local memory.
    /// </summary>
    internal VulkanBuffer CreateBuffer(long bytes, bool host, string what)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ulong size = (ulong)Math.Max(4, (bytes + 3) & ~3L);
        var bci = new BufferCreateInfo
        {
            SType = StructureType.BufferCreateInfo,
            Size = size,
            Usage = BufferUsageFlags.StorageBufferBit | BufferUsageFlags.TransferSrcBit | BufferUsageFlags.TransferDstBit,
            SharingMode = SharingMode.Exclusive,
        };
        VkBuffer buffer;
        Check(_vk.CreateBuffer(_device, &bci, null, &buffer), $"vkCreateBuffer ({what}, {size} bytes)");
        MemoryRequirements req;
        _vk.GetBufferMemoryRequirements(_device, buffer, &req);
        uint type = host
            ? FindMemoryType(req.MemoryTypeBits, MemoryPropertyFlags.HostVisibleBit | MemoryPropertyFlags.HostCoherentBit, MemoryPropertyFlags.HostCachedBit)
            : FindMemoryType(req.MemoryTypeBits, 0, MemoryPropertyFlags.DeviceLocalBit);
        var mai = new MemoryAllocateInfo { SType = StructureType.MemoryAllocateInfo, AllocationSize = req.Size, MemoryTypeIndex = type };
        DeviceMemory memory;
        Result r = _vk.AllocateMemory(_device, &mai, null, &memory);
        if (r != Result.Success)
        {
            _vk.DestroyBuffer(_device, buffer, null);
            throw new VulkanUnavailableException(
                $"allocating {size >> 20} MiB of {(host ? "host-visible" : "device")} memory for {what} failed ({r}): the Vulkan device {Info.Name} has too little memory");
        }
        Check(_vk.BindBufferMemory(_device, buffer, memory, 0), "vkBindBufferMemory");
        void* mapped = null;
        if (host) Check(_vk.MapMemory(_device, memory, 0, Vk.WholeSize, 0, &mapped), "vkMapMemory");
        return new VulkanBuffer(this, buffer, memory, (long)size, (byte*)mapped);
    }

    internal void Destroy(VkBuffer buffer, DeviceMemory memory, bool mapped)
    {
        if (_disposed) return;
        if (mapped) _vk.UnmapMemory(_device, memory);
        _vk.DestroyBuffer(_device, buffer, null);
        _vk.FreeMemory(_device, memory, null);
    }

    /// <summary>Copies <paramref name="bytes"/> from host memory into <paramref name="dst"/> at <paramref name="dstOffset"/> through the staging buffer, in chunks.</summary>
    internal void Upload(VulkanBuffer dst, long dstOffset, byte* src, long bytes)
    {
        if (dst.Mapped != null)
        {
            System.Buffer.MemoryCopy(src, dst.Mapped + dstOffset, dst.Size - dstOffset, bytes);
            return;
        }
        _staging ??= CreateBuffer(StagingBytes, host: true, "the staging buffer");
        for (long done = 0; done < bytes; done += StagingBytes)
        {
            long n = Math.Min(StagingBytes, bytes - done);
            System.Buffer.MemoryCopy(src + done, _staging.Mapped, StagingBytes, n);
            var region = new BufferCopy { SrcOffset = 0, DstOffset = (ulong)(dstOffset + done), Size = (ulong)n };
            var cb = BeginOneShot();
            _vk.CmdCopyBuffer(cb, _staging.Handle, dst.Handle, 1, &region);
            SubmitAndWait(cb);
            FreeCommandBuffer(cb);
        }
    }

    /// <summary>Copies <paramref name="bytes"/> of <paramref name="src"/> back to host memory (through the staging buffer when not mapped).</summary>
    internal void Download(VulkanBuffer src, long srcOffset, byte* dst, long bytes)
    {
        if (src.Mapped != null)
        {
            System.Buffer.MemoryCopy(src.Mapped + srcOffset, dst, bytes, bytes);
            return;
        }
        _staging ??= CreateBuffer(StagingBytes, host: true, "the staging buffer");
        for (long done = 0; done < bytes; done += StagingBytes)
        {
            long n = Math.Min(StagingBytes, bytes - done);
            var region = new BufferCopy { SrcOffset = (ulong)(srcOffset + done), DstOffset = 0, Size = (ulong)n };
            var cb = BeginOneShot();
            _vk.CmdCopyBuffer(cb, src.Handle, _staging.Handle, 1, &region);
            SubmitAndWait(cb);
            FreeCommandBuffer(cb);
            System.Buffer.MemoryCopy(_staging.Mapped, dst + done, n, n);
        }
    }

    // ---- command buffers ----

    internal CommandBuffer AllocateCommandBuffer()
    {
        var ai = new CommandBufferAllocateInfo { SType = StructureType.CommandBufferAllocateInfo, CommandPool = _pool, Level = CommandBufferLevel.Primary, CommandBufferCount = 1 };
        CommandBuffer cb;
        Check(_vk.AllocateCommandBuffers(_device, &ai, &cb), "vkAllocateCommandBuffers");
        return cb;
    }

    internal void FreeCommandBuffer(CommandBuffer cb)
    {
        if (!_disposed) _vk.FreeCommandBuffers(_device, _pool, 1, &cb);
    }

    internal void Begin(CommandBuffer cb, bool oneShot)
    {
        var bi = new CommandBufferBeginInfo { SType = StructureType.CommandBufferBeginInfo, Flags = oneShot ? CommandBufferUsageFlags.OneTimeSubmitBit : 0 };
        Check(_vk.BeginCommandBuffer(cb, &bi), "vkBeginCommandBuffer");
    }

    private CommandBuffer BeginOneShot()
    {
        var cb = AllocateCommandBuffer();
        Begin(cb, oneShot: true);
        return cb;
    }

    /// <summary>Ends (when recording) and submits <paramref name="cb"/>, then waits for it: one submit.</summary>
    internal void SubmitAndWait(CommandBuffer cb, bool end = true)
    {
        if (end) Check(_vk.EndCommandBuffer(cb), "vkEndCommandBuffer");
        var si = new SubmitInfo { SType = StructureType.SubmitInfo, CommandBufferCount = 1, PCommandBuffers = &cb };
        var fence = _fence;
        Check(_vk.QueueSubmit(_queue, 1, &si, fence), "vkQueueSubmit");
        Check(_vk.WaitForFences(_device, 1, &fence, true, ulong.MaxValue), "vkWaitForFences");
        Check(_vk.ResetFences(_device, 1, &fence), "vkResetFences");
    }

    /// <summary>A barrier making every earlier shader or transfer write visible to later shaders, transfers and the host.</summary>
    internal void Barrier(CommandBuffer cb)
    {
        var mb = new MemoryBarrier
        {
            SType = StructureType.MemoryBarrier,
            SrcAccessMask = AccessFlags.ShaderWriteBit | AccessFlags.TransferWriteBit | AccessFlags.HostWriteBit,
            DstAccessMask = AccessFlags.ShaderReadBit | AccessFlags.ShaderWriteBit | AccessFlags.TransferReadBit | AccessFlags.HostReadBit,
        };
        _vk.CmdPipelineBarrier(cb, PipelineStageFlags.ComputeShaderBit | PipelineStageFlags.TransferBit | PipelineStageFlags.HostBit,
            PipelineStageFlags.ComputeShaderBit | PipelineStageFlags.TransferBit | PipelineStageFlags.HostBit, 0, 1, &mb, 0, null, 0, null);
    }

    // ---- pipelines and descriptor sets ----

    private (DescriptorSetLayout Set, PipelineLayout Pipeline) Layout(int bindings)
    {
        if (_layouts.TryGetValue(bindings, out var l)) return l;
        var b = stackalloc DescriptorSetLayoutBinding[bindings];
        for (int i = 0; i < bindings; i++)
            b[i] = new DescriptorSetLayoutBinding { Binding = (uint)i, DescriptorType = DescriptorType.StorageBuffer, DescriptorCount = 1, StageFlags = ShaderStageFlags.ComputeBit };
        var dci = new DescriptorSetLayoutCreateInfo { SType = StructureType.DescriptorSetLayoutCreateInfo, BindingCount = (uint)bindings, PBindings = b };
        DescriptorSetLayout set;
        Check(_vk.CreateDescriptorSetLayout(_device, &dci, null, &set), "vkCreateDescriptorSetLayout");
        var range = new PushConstantRange { StageFlags = ShaderStageFlags.ComputeBit, Offset = 0, Size = PushBytes };
        var pci = new PipelineLayoutCreateInfo { SType = StructureType.PipelineLayoutCreateInfo, SetLayoutCount = 1, PSetLayouts = &set, PushConstantRangeCount = 1, PPushConstantRanges = &range };
        PipelineLayout pl;
        Check(_vk.CreatePipelineLayout(_device, &pci, null, &pl), "vkCreatePipelineLayout");
        l = (set, pl);
        _layouts[bindings] = l;
        return l;
    }

    /// <summary>
    /// The compute pipeline of shader variant <paramref name="shader"/> (an embedded .spv, e.g.
    /// "mul_mat_vec_q4_0") with specialization constants 0.. = <paramref name="spec"/> (constant 0
    /// is the workgroup size); cached.
    /// </summary>
    internal VulkanKernel Kernel(string shader, int bindings, params uint[] spec)
    {
        string key = shader + ":" + string.Join(",", spec);
        var layout = Layout(bindings);
        if (_pipelines.TryGetValue(key, out var cached)) return new VulkanKernel(cached, layout.Pipeline, layout.Set, bindings);
        if (!_modules.TryGetValue(shader, out var module))
        {
            byte[] code = LoadSpirV(shader);
            fixed (byte* c = code)
            {
                var smci = new ShaderModuleCreateInfo { SType = StructureType.ShaderModuleCreateInfo, CodeSize = (nuint)code.Length, PCode = (uint*)c };
                Check(_vk.CreateShaderModule(_device, &smci, null, &module), $"vkCreateShaderModule ({shader})");
            }
            _modules[shader] = module;
        }
        var entries = stackalloc SpecializationMapEntry[spec.Length];
        for (int i = 0; i < spec.Length; i++) entries[i] = new SpecializationMapEntry { ConstantID = (uint)i, Offset = (uint)(4 * i), Size = 4 };
        Pipeline pipeline;
        fixed (uint* data = spec)
        fixed (byte* name = s_main)
        {
            var si = new SpecializationInfo { MapEntryCount = (uint)spec.Length, PMapEntries = entries, DataSize = (nuint)(4 * spec.Length), PData = data };
            var cpci = new ComputePipelineCreateInfo
            {
                SType = StructureType.ComputePipelineCreateInfo,
                Stage = new PipelineShaderStageCreateInfo
                {
                    SType = StructureType.PipelineShaderStageCreateInfo,
                    Stage = ShaderStageFlags.ComputeBit,
                    Module = module,
                    PName = name,
                    PSpecializationInfo = &si,
                },
                Layout = layout.Pipeline,
            };
            Check(_vk.CreateComputePipelines(_device, default, 1, &cpci, null, &pipeline), $"vkCreateComputePipelines ({key})");
        }
        _pipelines[key] = pipeline;
        return new VulkanKernel(pipeline, layout.Pipeline, layout.Set, bindings);
    }

    private static readonly ConcurrentDictionary<string, byte[]> s_spirv = new();

    /// <summary>The SPIR-V of <paramref name="shader"/>, embedded deflated by Shaders.targets.</summary>
    internal static byte[] LoadSpirV(string shader) => s_spirv.GetOrAdd(shader, name =>
    {
        using var s = typeof(VulkanDevice).Assembly.GetManifestResourceStream($"EdgeLlm.Vulkan.Shaders.{name}.spv.deflate")
            ?? throw new VulkanUnavailableException($"shader {name}.spv is not in this build: glslangValidator was missing when EdgeLlm was built; install glslang-tools (or the Vulkan SDK) and rebuild");
        using var inflate = new System.IO.Compression.DeflateStream(s, System.IO.Compression.CompressionMode.Decompress);
        var ms = new MemoryStream();
        inflate.CopyTo(ms);
        return ms.ToArray();
    });

    /// <summary>A descriptor set of <paramref name="kernel"/>'s layout binding <paramref name="buffers"/> to bindings 0...</summary>
    internal DescriptorSet CreateSet(VulkanKernel kernel, params VulkanBuffer[] buffers)
    {
        if (buffers.Length != kernel.Bindings)
            throw new ArgumentException($"the kernel has {kernel.Bindings} bindings, {buffers.Length} buffers given");
        if (_setsLeftInPool == 0)
        {
            const uint sets = 256;
            var size = new DescriptorPoolSize { Type = DescriptorType.StorageBuffer, DescriptorCount = sets * 5 };
            var dpci = new DescriptorPoolCreateInfo { SType = StructureType.DescriptorPoolCreateInfo, MaxSets = sets, PoolSizeCount = 1, PPoolSizes = &size };
            DescriptorPool pool;
            Check(_vk.CreateDescriptorPool(_device, &dpci, null, &pool), "vkCreateDescriptorPool");
            _descriptorPools.Add(pool);
            _setsLeftInPool = (int)sets;
        }
        var layout = kernel.SetLayout;
        var ai = new DescriptorSetAllocateInfo { SType = StructureType.DescriptorSetAllocateInfo, DescriptorPool = _descriptorPools[^1], DescriptorSetCount = 1, PSetLayouts = &layout };
        DescriptorSet set;
        Check(_vk.AllocateDescriptorSets(_device, &ai, &set), "vkAllocateDescriptorSets");
        _setsLeftInPool--;
        var infos = stackalloc DescriptorBufferInfo[buffers.Length];
        var writes = stackalloc WriteDescriptorSet[buffers.Length];
        for (int i = 0; i < buffers.Length; i++)
        {
            infos[i] = new DescriptorBufferInfo { Buffer = buffers[i].Handle, Offset = 0, Range = Vk.WholeSize };
            writes[i] = new WriteDescriptorSet
            {
                SType = StructureType.WriteDescriptorSet,
                DstSet = set,
                DstBinding = (uint)i,
                DescriptorCount = 1,
                DescriptorType = DescriptorType.StorageBuffer,
                PBufferInfo = &infos[i],
            };
        }
        _vk.UpdateDescriptorSets(_device, (uint)buffers.Length, writes, 0, null);
        return set;
    }

    /// <summary>Records one dispatch of <paramref name="kernel"/> with its set and push constants.</summary>
    internal void Dispatch(CommandBuffer cb, VulkanKernel kernel, DescriptorSet set, ReadOnlySpan<uint> push, uint x, uint y = 1, uint z = 1)
    {
        _vk.CmdBindPipeline(cb, PipelineBindPoint.Compute, kernel.Pipeline);
        _vk.CmdBindDescriptorSets(cb, PipelineBindPoint.Compute, kernel.Layout, 0, 1, &set, 0, null);
        Span<uint> data = stackalloc uint[(int)(PushBytes / 4)];
        data.Clear();
        push.CopyTo(data);
        fixed (uint* p = data)
            _vk.CmdPushConstants(cb, kernel.Layout, ShaderStageFlags.ComputeBit, 0, PushBytes, p);
        _vk.CmdDispatch(cb, x, y, z);
    }

    /// <summary>Destroys everything this device created, then the device and the instance.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _staging?.Dispose();
        _vk.DeviceWaitIdle(_device);
        _disposed = true;
        foreach (var p in _pipelines.Values) _vk.DestroyPipeline(_device, p, null);
        foreach (var m in _modules.Values) _vk.DestroyShaderModule(_device, m, null);
        foreach (var (set, pl) in _layouts.Values)
        {
            _vk.DestroyPipelineLayout(_device, pl, null);
            _vk.DestroyDescriptorSetLayout(_device, set, null);
        }
        foreach (var dp in _descriptorPools) _vk.DestroyDescriptorPool(_device, dp, null);
        foreach (var qp in _queryPools) _vk.DestroyQueryPool(_device, qp, null);
        _vk.DestroyFence(_device, _fence, null);
        _vk.DestroyCommandPool(_device, _pool, null);
        _vk.DestroyDevice(_device, null);
        _vk.DestroyInstance(_instance, null);
        _vk.Dispose();
    }
}

/// <summary>A cached compute pipeline with its layouts.</summary>
internal readonly record struct VulkanKernel(Pipeline Pipeline, PipelineLayout Layout, DescriptorSetLayout SetLayout, int Bindings);

/// <summary>A storage buffer and its memory; <see cref="Mapped"/> is non-null for host-visible buffers.</summary>
internal sealed unsafe class VulkanBuffer(VulkanDevice device, VkBuffer handle, DeviceMemory memory, long size, byte* mapped) : IDisposable
{
    private bool _disposed;

    public VkBuffer Handle { get; } = handle;
    public long Size { get; } = size;
    public byte* Mapped { get; } = mapped;

    public Span<float> AsFloats() => new(Mapped, (int)(Size / 4));

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        device.Destroy(Handle, memory, Mapped != null);
    }
}
