/* mbkernel: a Multiboot kernel in freestanding C, as the "bare bones"
 * tutorials write one (gcc -m32 -ffreestanding, a few lines of assembly in
 * mbkernel_start.S). It checks the boot loader's handshake, reads the
 * information block and prints what it found on COM1, in a form that is
 * the same under QEMU (-M pc, SeaBIOS) and vmm: values both give alike,
 * checks where their memory maps differ (SeaBIOS reserves more).
 * Expected output without a command line or module: mbkernel.out. */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2badb002u
#define INFO_MEMORY (1u << 0)
#define INFO_CMDLINE (1u << 2)
#define INFO_MODS (1u << 3)
#define INFO_MMAP (1u << 6)
#define INFO_LOADER_NAME (1u << 9)
#define COM1 0x3f8
#define DEBUG_EXIT 0xf4

struct multiboot_info {
	u32 flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
	u32 syms[4];
	u32 mmap_length, mmap_addr, drives_length, drives_addr, config_table, boot_loader_name;
};

struct multiboot_module {
	u32 start, end, string, reserved;
};

struct multiboot_mmap_entry {
	u32 size;
	u64 addr, len;
	u32 type;
} __attribute__((packed));

static inline void outb(u16 port, u8 value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static void serial_init(void)
{
	outb(COM1 + 1, 0x00);	/* no interrupts */
	outb(COM1 + 3, 0x80);	/* DLAB */
	outb(COM1 + 0, 0x01);	/* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);	/* 8N1 */
	outb(COM1 + 2, 0xc7);	/* FIFO */
	outb(COM1 + 4, 0x03);
}

static void putc(char c)
{
	while (!(inb(COM1 + 5) & 0x20))
		;
	outb(COM1, (u8)c);
}

static void puts(const char *s) { while (*s) putc(*s++); }

static void putu(u32 v)
{
	char buf[11];
	int i = 10;
	buf[i] = 0;
	do { buf[--i] = (char)('0' + v % 10); v /= 10; } while (v);
	puts(buf + i);
}

static void puthex(u32 v)
{
	puts("0x");
	for (int shift = 28; shift >= 0; shift -= 4)
		putc("0123456789abcdef"[(v >> shift) & 0xf]);
}

static void exit_with(u8 status)
{
	outb(DEBUG_EXIT, status);
	for (;;) __asm__ volatile("cli; hlt");
}

/* The command line after its first word (the kernel's name, as QEMU and GRUB pass it). */
static const char *arguments(const char *cmdline)
{
	while (*cmdline && *cmdline != ' ') cmdline++;
	while (*cmdline == ' ') cmdline++;
	return cmdline;
}

static void print_module(u32 n, const struct multiboot_module *m)
{
	puts("module ");
	putu(n);
	puts(": ");
	putu(m->end - m->start);
	puts(" bytes, page-aligned: ");
	puts((m->start & 0xfff) ? "no" : "yes");
	puts(", first line: \"");
	for (const char *p = (const char *)m->start; p < (const char *)m->end && *p != '\n'; p++)
		putc(*p);
	puts("\"\n");
}

void kernel_main(u32 magic, const struct multiboot_info *info)
{
	serial_init();
	puts("Multiboot kernel in C\n");
	puts("magic: ");
	puthex(magic);
	if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
		puts(" wrong: not booted by a Multiboot loader\n");
		exit_with(1);
	}
	puts(" ok\n");
	u32 want = INFO_MEMORY | INFO_CMDLINE | INFO_MMAP | INFO_LOADER_NAME;
	puts("flags: memory, command line, memory map, boot loader name: ");
	puts((info->flags & want) == want ? "ok\n" : "missing\n");
	if ((info->flags & want) != want)
		exit_with(2);
	puts("mem_lower: ");
	putu(info->mem_lower);
	puts(" KiB\n");
	u64 high_ram = 0;
	for (u32 at = info->mmap_addr; at < info->mmap_addr + info->mmap_length;) {
		const struct multiboot_mmap_entry *e = (const void *)at;
		if (e->type == 1 && e->addr == 0x100000)
			high_ram = e->len;
		at += e->size + 4;
	}
	/* The amount differs with the firmware (SeaBIOS keeps the top 128 KiB): check, do not print. */
	int found = high_ram >= 0x100000 && high_ram / 1024 == info->mem_upper;
	puts("memory map: RAM from 1 MiB, as long as mem_upper says: ");
	puts(found ? "ok\n" : "wrong\n");
	const char *name = (const char *)info->boot_loader_name;
	puts("boot loader name: ");
	puts(name[0] ? "present\n" : "empty\n");
	puts("arguments: \"");
	puts(arguments((const char *)info->cmdline));
	puts("\"\n");
	u32 mods = (info->flags & INFO_MODS) ? info->mods_count : 0;
	puts("modules: ");
	putu(mods);
	puts("\n");
	for (u32 i = 0; i < mods; i++)
		print_module(i, (const struct multiboot_module *)info->mods_addr + i);
	puts("goodbye\n");
	exit_with(found ? 0 : 3);
}
